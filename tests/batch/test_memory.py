"""Bounded memory: a job streams its input, so its peak RSS does not grow with the file.

Real `augury batch run` processes score two CSV files, one three times the other, with a chunk
far smaller than either; the peak RSS of the bigger job may exceed the smaller one's by only a
small part of the extra input (a job that held the file, or its results, would grow by more
than the whole difference)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# Runs the CLI in this interpreter, then prints the process's peak RSS in KiB (Linux).
PEAK_RSS = (
    "import resource, sys; from augury.cli.main import main; rc = main(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
)


def write_csv(table: pa.Table, copies: int, path: Path) -> Path:
    with pacsv.CSVWriter(path, table.schema) as writer:
        for _ in range(copies):
            writer.write_table(table)
    return path


def peak_rss_mib(model: Path, source: Path, out: Path) -> float:
    args = ["batch", "run", "--model", str(model), "--input", str(source), "--output",
            str(out), "--chunk-rows", "4000", "--progress-interval", "1000"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def test_peak_rss_stays_flat_as_the_input_grows(
    fraud_model: Path, fraud_table: pa.Table, tmp_path: Path
) -> None:
    small = write_csv(fraud_table, 4, tmp_path / "small.csv")  # 24,000 rows, ~10 MiB
    big = write_csv(fraud_table, 20, tmp_path / "big.csv")  # 120,000 rows, ~50 MiB
    extra_mib = (big.stat().st_size - small.stat().st_size) / 2**20
    assert extra_mib > 30, "the files are too close in size for the test to mean anything"
    rss_small = peak_rss_mib(fraud_model, small, tmp_path / "small.out.parquet")
    rss_big = peak_rss_mib(fraud_model, big, tmp_path / "big.out.parquet")
    assert pacsv.read_csv(big, read_options=pacsv.ReadOptions(use_threads=False)).num_rows == 120000
    print(f"peak RSS {rss_small:.0f} MiB -> {rss_big:.0f} MiB, input +{extra_mib:.0f} MiB")
    assert rss_big - rss_small < 0.25 * extra_mib, (rss_small, rss_big, extra_mib)
