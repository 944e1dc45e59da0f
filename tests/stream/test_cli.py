"""`augury stream`: argument parsing, CSV reading and a short replay against a live server."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from augury.cli.main import main
from augury.cli.stream import parse_rate, parse_window, read_csv
from augury.stream.generator import generate, write_csv

from .conftest import KEY, Live


def test_parse_rate_and_window() -> None:
    assert parse_rate("200/s") == 200.0 and parse_rate("600/min") == 10.0
    with pytest.raises(argparse.ArgumentTypeError, match="not a rate"):
        parse_rate("fast")
    assert parse_window("count:64:32") == {"kind": "count", "size": 64.0, "stride": 32.0}


def test_read_csv_names_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    write_csv(generate(seconds=1.0, rate=50.0, n_faults=0), path)
    table = read_csv(str(path), None, "t", None, 50.0)
    assert table.channels == ["x", "y"] and len(table.events) == 50
    with pytest.raises(ValueError, match="no column 'z'"):
        read_csv(str(path), "x,z", "t", None, 50.0)


def test_replay_prints_results(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v.csv"
    write_csv(generate(seconds=1.0, rate=400.0, n_faults=0), path)
    argv = ["stream", "--model", "zscore", "--replay", str(path), "--rate", "2000/s"]
    argv += ["--url", live.url, "--api-key", KEY, "--window", "count:40:40"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 10 and '"events_received": 400' in err
