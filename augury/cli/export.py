"""`augury export OUT/ [--model SRC] [--quantize int4|int8|none]`: a self-contained model folder.

The folder holds the weights (quantized ahead of time), the tokenizer, the chat template and the
config; `augury serve --model OUT/` runs it offline (see augury/models/export.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from augury.models.quant import QUANTIZATIONS


def add_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="write a self-contained (optionally quantized) model folder for offline serving",
        description="Export a model (weights, tokenizer, chat template, config) into a new "
        "folder that `augury serve --model OUT` runs offline.",
    )
    p.add_argument("out", type=Path, help="the folder to create (must be new or empty)")
    p.add_argument("--model", default=None, help="a .gguf file or Hugging Face folder")
    p.add_argument(
        "--quantize",
        default="int4",
        choices=list(QUANTIZATIONS),
        help="weight-only quantization of the decoder's linears (default int4: lossless for "
        "Q4_1 GGUF files)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from augury.models.export import export_model

    start = time.perf_counter()
    out = export_model(args.model, args.out, args.quantize)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(
        f"exported to {out} ({args.quantize}, {size / 2**20:.1f} MiB) in "
        f"{time.perf_counter() - start:.1f} s; serve it with: augury serve --model {out}"
    )
    return 0
