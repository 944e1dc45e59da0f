"""The `augury` command line: each command imports only what it needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from augury.cli.main import COMMANDS, chosen_command

HEAVY = ("sklearn", "pandas", "pyarrow", "scipy")
"""What other commands need (elm: scikit-learn, pandas; batch: pyarrow), and what a server
loads only once a batch runs (pyarrow) or a streaming session asks for an ELM model (scipy):
~190 MB resident together."""


def test_chosen_command_is_the_first_word() -> None:
    assert chosen_command(["serve", "--port", "9000"]) == "serve"
    assert chosen_command(["-v", "batch", "run", "--input", "x.jsonl"]) == "batch"
    assert chosen_command(["serve", "--model", "export"]) == "serve"
    assert chosen_command(["--help"]) is None
    assert chosen_command(["nonsense"]) is None
    assert chosen_command([]) is None


def _modules_after(argv: list[str]) -> tuple[int, str, set[str]]:
    code = (
        "import sys\n"
        "from augury.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    *_, last = done.stdout.splitlines() or [""]
    return done.returncode, done.stdout, set(filter(None, last.split(",")))


def test_serve_starts_without_what_it_may_never_use() -> None:
    _, out, heavy = _modules_after(["serve", "--help"])
    assert "--model-repository" in out  # serve's own options are all there
    assert heavy == set()


@pytest.mark.parametrize("argv", [["--help"], ["nonsense"]])
def test_help_and_errors_list_every_command(argv: list[str]) -> None:
    command = [sys.executable, "-m", "augury.cli.main", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    text = done.stdout + done.stderr
    assert all(name in text for name in COMMANDS)
    assert (done.returncode == 0) == (argv == ["--help"])


def test_model_flags_reach_the_engine_config() -> None:
    import argparse

    from augury.cli.common import add_model_args, engine_config_from_args

    p = argparse.ArgumentParser()
    add_model_args(p)
    default = engine_config_from_args(p.parse_args([]))
    assert default.device == "cpu" and default.cuda_graphs
    eager = engine_config_from_args(p.parse_args(["--device", "cuda", "--enforce-eager"]))
    assert eager.device == "cuda" and not eager.cuda_graphs
