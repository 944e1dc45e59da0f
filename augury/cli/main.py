"""The `augury` command: one module per command group, each exposing `add_parser(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Each name is a module of augury.cli with `add_parser(subparsers) -> None`; the parser it adds
# sets `func(args) -> int`.
COMMANDS: tuple[str, ...] = (
    "generate", "chat", "info", "serve", "export", "distill", "elm", "batch", "stream",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="augury", description="Augury inference system")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"augury.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"augury: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
