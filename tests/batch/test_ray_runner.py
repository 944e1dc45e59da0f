"""`augury batch run --engine ray`: the same job on Ray Data (a local Ray with 2 CPUs) gives
the same output and errors file as the local engine, and resumes a job the local engine
started (the checkpoint is the same)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pytest

from augury.batch.job import ChunkResult, Job
from augury.batch.readers import Chunk
from augury.cli.batch import job_spec, open_sinks
from augury.cli.main import build_parser, main
from tests.batch.helpers import expected_ids, ids_of, read_output, write_table

F = TypeVar("F", bound=Callable[..., None])


def on_ray(test: F) -> F:
    """Marks a test that starts a local Ray (slow; `-m ray` selects them)."""
    marked: F = pytest.mark.ray(pytest.mark.slow(pytest.mark.timeout(600)(test)))
    return marked


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def assert_same_predictions(remote: list[dict[str, Any]], local: list[dict[str, Any]]) -> None:
    """Same rows, ids and labels; probabilities equal to float32 rounding. Ray runs each actor
    with one BLAS thread (OMP_NUM_THREADS=1), and a matmul split over another number of threads
    sums in another order, so the last bits of a probability may differ."""
    assert [(r["id"], r["label"]) for r in remote] == [(r["id"], r["label"]) for r in local]
    for r, x in zip(remote, local, strict=True):
        assert r.keys() == x.keys()
        assert r["probabilities"] == pytest.approx(x["probabilities"], abs=1e-6), r["id"]


def batch_run(*args: str) -> None:
    assert main(["batch", "run", "--progress-interval", "1000", *args]) == 0


def with_bad_rows(table: pa.Table, path: Path) -> Path:
    """`table` as JSONL with a missing feature, an out-of-range value and a broken line."""
    records = table.to_pylist()
    records[3]["log1p_C1"] = None
    records[1500]["log1p_C3"] = -5.0
    lines = [json.dumps(r) for r in records]
    lines.insert(2600, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


@on_ray
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_predict_on_ray_matches_local(
    local_ray: None, fraud_model: Path, fraud_table: pa.Table, tmp_path: Path, fmt: str
) -> None:
    table = fraud_table.slice(0, 3000)
    if fmt == "jsonl":
        source = with_bad_rows(table, tmp_path / "in.jsonl")
    else:
        source = write_table(table, tmp_path / f"in.{fmt}")
    common = ["--model", str(fraud_model), "--input", str(source), "--id-column", "txn",
              "--chunk-rows", "500"]  # fmt: skip
    batch_run(*common, "--output", str(tmp_path / "local.jsonl"))
    batch_run(*common, "--output", str(tmp_path / "ray.jsonl"), "--engine", "ray",
              "--replicas", "2")  # fmt: skip
    local, remote = read_output(tmp_path / "local.jsonl"), read_output(tmp_path / "ray.jsonl")
    assert_same_predictions(remote, local)
    errors = (tmp_path / "ray.jsonl.errors.jsonl").read_text()
    assert errors == (tmp_path / "local.jsonl.errors.jsonl").read_text()
    if fmt == "jsonl":
        assert [json.loads(e)["row"] for e in errors.splitlines()] == [3, 1500, 2600]
        assert len(remote) == 2998
    else:
        assert ids_of(remote) == expected_ids(3000)


class StopAfter:
    """A task that cancels its job when it reaches row `stop` (a crash, seen from the
    checkpoint: everything before is committed, nothing after)."""

    def __init__(self, task: Any, stop: int) -> None:
        self.task, self.stop = task, stop
        self.job: Job | None = None

    async def run_chunk(self, chunk: Chunk) -> ChunkResult:
        if chunk.start >= self.stop and self.job is not None:
            self.job.cancel()
            await asyncio.Event().wait()  # the job cancels this task
        result: ChunkResult = await self.task.run_chunk(chunk)
        return result


@on_ray
def test_ray_resumes_a_job_the_local_engine_started(
    local_ray: None, fraud_model: Path, fraud_table: pa.Table, tmp_path: Path
) -> None:
    from augury.batch.predict_task import predict_task

    source = write_table(fraud_table.slice(0, 4000), tmp_path / "in.jsonl")
    common = ["--model", str(fraud_model), "--input", str(source), "--id-column", "txn",
              "--chunk-rows", "500"]  # fmt: skip
    out = tmp_path / "out.jsonl"
    args = build_parser().parse_args(["batch", "run", *common, "--output", str(out)])
    stopper = StopAfter(predict_task(fraud_model), stop=1500)
    job = Job(job_spec(args, True), stopper, *open_sinks(args))
    stopper.job = job
    summary = asyncio.run(job.run())
    # chunks 0 and 1 are committed before chunk 3 is read; chunk 2 may be cut short
    assert summary.cancelled and summary.counts.rows_done in (1000, 1500)
    batch_run(*common, "--output", str(out), "--engine", "ray", "--replicas", "2")
    batch_run(*common, "--output", str(tmp_path / "clean.jsonl"))
    assert_same_predictions(read_output(out), read_output(tmp_path / "clean.jsonl"))
    assert json.loads(Path(f"{out}.checkpoint.json").read_text())["done"]


@on_ray
def test_llm_on_ray_matches_local(local_ray: None, tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"What is {i} plus {i}?"})
                              + "\n" for i in range(8)))  # fmt: skip
    common = ["--input", str(source), "--id-column", "id", "--max-tokens", "6",
              "--temperature", "0", "--dtype", "float32", "--num-threads", "1",
              "--chunk-rows", "4"]  # fmt: skip
    batch_run(*common, "--output", str(tmp_path / "local.jsonl"))
    batch_run(*common, "--output", str(tmp_path / "ray.jsonl"), "--engine", "ray")
    local, remote = read_output(tmp_path / "local.jsonl"), read_output(tmp_path / "ray.jsonl")
    assert ids_of(remote) == [f"q{i}" for i in range(8)]
    assert [r["text"] for r in remote] == [r["text"] for r in local]
    assert all(int(str(r["completion_tokens"])) > 0 for r in remote)


def test_ray_engine_without_ray_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
    fraud_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    source = tmp_path / "in.jsonl"
    source.write_text('{"x": 1}\n')
    args = ["batch", "run", "--model", str(fraud_model), "--input", str(source),
            "--output", str(tmp_path / "out.jsonl"), "--engine", "ray"]  # fmt: skip
    assert main(args) == 2
    assert "pip install 'augury[ray]'" in capsys.readouterr().err
