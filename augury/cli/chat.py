"""`augury chat`: an interactive multi-turn chat in the terminal, tokens streamed as they come."""

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
from augury.cli.generate import stream

HELP = "commands: /reset clears the history, /exit (or Ctrl-D) quits"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("chat", help="chat with the model in the terminal")
    p.add_argument("--system", default=None, help="system prompt")
    add_model_args(p)
    add_sampling_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = sampling_from_args(args)
    engine = engine_from_args(args)
    history: list[dict[str, str]] = []
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"augury chat with {engine.model_id}. {HELP}", file=sys.stderr)
    turn = 0
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        message = line.strip()
        if not message:
            continue
        if message in ("/exit", "/quit"):
            break
        if message == "/reset":
            history.clear()
            print("[history cleared]", file=sys.stderr)
            continue
        if message.startswith("/"):
            print(f"unknown command {message!r}; {HELP}", file=sys.stderr)
            continue
        history.append({"role": "user", "content": message})
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + history
        prompt = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        try:
            reply, _ = stream(engine, prompt, params, f"chat-{turn}")
        except ValueError as exc:  # e.g. the conversation outgrew the context
            history.pop()
            print(f"\n[error: {exc}; try /reset]", file=sys.stderr)
            continue
        sys.stdout.write("\n")
        sys.stdout.flush()
        history.append({"role": "assistant", "content": reply})
        turn += 1
    return 0
