"""`augury generate "text"`: raw completion, streamed to stdout (and nothing else on stdout)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from augury.cli.common import (
    add_model_args,
    add_sampling_args,
    engine_from_args,
    sampling_from_args,
)
from augury.llm.engine import LLMEngine
from augury.llm.sampling_params import SamplingParams


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "generate", help="complete a text (raw, no chat template)"
    )
    p.add_argument("prompt", help="the text to continue ('-' reads it from stdin)")
    add_model_args(p)
    add_sampling_args(p)
    p.set_defaults(func=run)


def stream(
    engine: LLMEngine, prompt: str, params: SamplingParams, request_id: str
) -> tuple[str, str | None]:
    """Run one request to the end, writing text to stdout as it comes; returns (text, finish)."""
    engine.add_request(request_id, prompt, params)
    text, finish = "", None
    while engine.has_unfinished():
        for out in engine.step():
            for d in out.outputs:
                sys.stdout.write(d.text)
                sys.stdout.flush()
                text += d.text
                finish = d.finish_reason or finish
    return text, finish


def run(args: argparse.Namespace) -> int:
    params = sampling_from_args(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    engine = engine_from_args(args)
    _, finish = stream(engine, prompt, params, "cli-generate")
    sys.stdout.write("\n")
    print(f"[finish: {finish}]", file=sys.stderr) if args.verbose else None
    return 0
