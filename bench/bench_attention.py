"""Paged decode attention of a token and its verified drafts: rows computed together vs apart.

    .venv/bin/python -m bench.bench_attention [--threads 2] [--contexts 300 1500] [--rows 1 5 9]

SmolLM2's shape (9 query heads, 3 kv heads, head size 64, blocks of 16, bfloat16). "together":
R consecutive rows of one sequence, each context one longer (a decoding token and R - 1 drafts
being verified), which the kernel computes as one task per kv head. "apart": the same rows with
contexts that do not follow each other, so each row is its own task, which is how they ran
before. Times are per layer (one kernel call); each cell is the lower of two medians of 200
calls, the two layouts measured in turn.
Prints a table; writes bench/results/bench_attention.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from bench.common import median, print_table, write_json


def time_call(ops: Any, args: tuple[Any, ...], calls: int = 200) -> float:
    """Median microseconds of one paged_decode_attention call."""
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        ops.paged_decode_attention(*args)
        times.append(time.perf_counter() - t)
    return median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contexts", type=int, nargs="+", default=[300, 1500])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 5, 9])
    args = parser.parse_args()
    from augury.kernels.loader import kernel_ops
    from augury.threads import set_torch_threads

    set_torch_threads(args.threads)
    ops = kernel_ops()
    if ops is None:
        raise SystemExit("the C++ kernels are not built (make install builds them)")
    g = torch.Generator().manual_seed(0)
    blocks = (max(args.contexts) + max(args.rows)) // 16 + 2
    kc = torch.randn(3, blocks, 16, 64, generator=g).bfloat16()
    vc = torch.randn(3, blocks, 16, 64, generator=g).bfloat16()
    rows_out: list[list[Any]] = []
    results = []
    for ctx in args.contexts:
        for r in args.rows:
            q = torch.randn(r, 9, 64, generator=g).bfloat16()
            tables = torch.randperm(blocks, generator=g).repeat(r, 1)
            together = torch.arange(ctx, ctx + r)
            apart = torch.arange(ctx + r - 1, ctx - 1, -1)  # the same work, no run of rows
            cells = {}
            for name, lens in [("together", together), ("apart", apart)] * 2:
                us = time_call(ops, (q, kc, vc, tables, lens, 0.125))
                cells[name] = min(cells.get(name, us), us)
            rows_out.append(
                [ctx, r, cells["apart"], cells["together"], cells["apart"] / cells["together"]]
            )
            results.append(
                {
                    "context": ctx,
                    "rows": r,
                    "apart_us": cells["apart"],
                    "together_us": cells["together"],
                }
            )
    print_table(
        f"paged decode attention per layer, bfloat16, {args.threads} threads",
        ["context", "rows", "apart us", "together us", "speed-up"],
        rows_out,
    )
    write_json("bench_attention", {"threads": args.threads, "results": results})


if __name__ == "__main__":
    main()
