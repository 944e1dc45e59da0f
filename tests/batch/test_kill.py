"""Nothing lost, nothing twice: real `augury batch run` processes killed with SIGKILL at random
moments, then re-run with the same command until done; the output must equal a clean run's."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pytest

from tests.batch.helpers import expected_ids, ids_of, read_output, write_table
from tests.batch.test_job import run_job

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "augury.cli.main", "batch", "run", *args]


def run_killed(args: list[str], kills: int, max_delay_s: float, seed: int) -> int:
    """Start the job, SIGKILL it a random while after it starts working, `kills` times (fewer
    if it finishes first); then run it to the end. Returns how many kills landed."""
    rng = random.Random(seed)
    landed = 0
    for _ in range(kills):
        proc = subprocess.Popen(
            args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=ENV, text=True
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "batch: N rows" once the model is loaded
        time.sleep(rng.uniform(0.0, max_delay_s))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            landed += 1
        proc.wait(timeout=120)
        assert line.startswith("batch"), line + proc.stderr.read()
        proc.stderr.close()
    done = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr
    return landed


@pytest.mark.parametrize(
    ("fmt_in", "fmt_out", "kills"), [("jsonl", "jsonl", 5), ("parquet", "parquet", 3)]
)
def test_predict_job_survives_kill_9(
    fraud_model: Path, fraud_table: pa.Table, tmp_path: Path, fmt_in: str, fmt_out: str,
    kills: int,
) -> None:  # fmt: skip
    source = write_table(fraud_table, tmp_path / f"in.{fmt_in}")
    common = ["--model", str(fraud_model), "--input", str(source), "--id-column", "txn"]
    clean = tmp_path / f"clean.{fmt_out}"
    run_job(fraud_model, source, clean, chunk_rows=50)  # same chunks: bit-identical results
    out = tmp_path / f"out.{fmt_out}"
    args = command(*common, "--output", str(out), "--chunk-rows", "50")
    # Kill early enough that each run still has work left; at least two kills must land so the
    # resume path runs repeatedly (how many land depends on timing, the exactly-once check not).
    landed = run_killed(args, kills=kills, max_delay_s=0.5, seed=zlib.crc32(fmt_in.encode()))
    assert landed >= 2
    rows = read_output(out)
    assert ids_of(rows) == expected_ids(fraud_table.num_rows)
    assert rows == read_output(clean)
    ckpt = json.loads(Path(f"{out}.checkpoint.json").read_text())
    assert ckpt["done"] and ckpt["counts"]["ok"] == fraud_table.num_rows


def test_llm_job_survives_kill_9(tmp_path: Path) -> None:
    prompts = [f"Question {i}: what is {i} plus {i}?" for i in range(40)]
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p}) + "\n"
                              for i, p in enumerate(prompts)))  # fmt: skip
    common = [
        "--input", str(source), "--id-column", "id", "--max-tokens", "6", "--temperature", "0",
        "--dtype", "float32", "--num-threads", "1", "--chunk-rows", "4", "--max-in-flight", "8",
    ]  # fmt: skip
    out = tmp_path / "out.jsonl"
    landed = run_killed(command(*common, "--output", str(out)), kills=2, max_delay_s=3.0, seed=7)
    assert landed >= 1
    rows = read_output(out)
    assert ids_of(rows) == [f"q{i}" for i in range(40)]
    assert all(r["completion_tokens"] == 6 or r["finish_reason"] == "stop" for r in rows)
    clean = tmp_path / "clean.jsonl"
    subprocess.run(command(*common, "--output", str(clean)), check=True, env=ENV, timeout=300,
                   capture_output=True)  # fmt: skip
    assert [r["text"] for r in rows] == [r["text"] for r in read_output(clean)]
