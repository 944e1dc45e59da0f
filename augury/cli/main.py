"""The `augury` command: one module per command group, each exposing `add_parser(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# OpenMP's wait policy, read when libgomp loads (with torch, so before any command imports it).
# A server runs torch ops in more than one long-lived thread (the LLM engine's, a predictive
# model's, the event loop's), each keeping its own OpenMP team; with more OpenMP threads than
# cores libgomp lets a waiting worker spin only 100 times before it sleeps, and then every
# parallel op of the engine pays a wake-up: single-stream decode fell from ~185 to ~73 tok/s
# with the MiniLM text model served beside it (measured 2026-11-23). ACTIVE keeps 1,000 spins
# then; the explicit spin count keeps libgomp's usual 300,000 otherwise, so idle workers still
# go to sleep (ACTIVE alone would spin them forever).
os.environ.setdefault("OMP_WAIT_POLICY", "active")
os.environ.setdefault("GOMP_SPINCOUNT", "300000")

# Each name is a module of augury.cli with `add_parser(subparsers) -> None`; the parser it adds
# sets `func(args) -> int`.
COMMANDS: tuple[str, ...] = (
    "generate", "chat", "info", "serve", "export", "distill", "elm", "batch", "stream",
)  # fmt: skip


def build_parser(commands: tuple[str, ...] = COMMANDS) -> argparse.ArgumentParser:
    """The parser with `commands`' subparsers (each imports its module: all of them for help)."""
    parser = argparse.ArgumentParser(prog="augury", description="Augury inference system")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in commands:
        importlib.import_module(f"augury.cli.{name}").add_parser(sub)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The command `argv` runs (its first word that is not an option), if it is one of ours."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only the chosen command's module is imported: the others pull in what they need (the
    # elm command scikit-learn and pandas, batch pyarrow: ~90 MB of a server's memory).
    command = chosen_command(argv)
    parser = build_parser((command,) if command else COMMANDS)
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
