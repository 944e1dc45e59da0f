"""The job runner end to end on the predictive path (fast): formats, ids, errors, resume."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow as pa
import pytest

from augury.batch.job import Job, JobSpec
from augury.batch.predict_task import PredictTask, load_pipeline
from augury.batch.readers import detect_format
from augury.batch.writers import JsonlSink, open_file_sink
from tests.batch.helpers import expected_ids, ids_of, read_output, write_table


def run_job(
    model: Path, source: Path, out: Path, *, chunk_rows: int = 1000, restart: bool = False,
    id_column: str | None = "txn",
) -> object:  # fmt: skip
    spec = JobSpec(
        input=source,
        input_format=detect_format(source),
        checkpoint=Path(f"{out}.checkpoint.json"),
        fingerprint={"input": str(source)},
        id_column=id_column,
        chunk_rows=chunk_rows,
        restart=restart,
    )
    job = Job(
        spec,
        PredictTask(load_pipeline(model)),
        open_file_sink(out, detect_format(out)),
        JsonlSink(Path(f"{out}.errors.jsonl")),
    )
    return asyncio.run(job.run())


@pytest.mark.parametrize("fmt_in", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("fmt_out", ["jsonl", "csv", "parquet"])
def test_every_format_pair(
    fraud_model: Path, fraud_table: pa.Table, tmp_path: Path, fmt_in: str, fmt_out: str
) -> None:
    table = fraud_table.slice(0, 1500)
    source = write_table(table, tmp_path / f"in.{fmt_in}")
    out = tmp_path / f"out.{fmt_out}"
    run_job(fraud_model, source, out, chunk_rows=400)
    rows = read_output(out)
    assert ids_of(rows) == expected_ids(1500)
    labels = {r["label"] for r in rows}
    assert labels <= {"legit", "fraud"}
    first = rows[0]
    p = first["probabilities"] if "probabilities" in first else [
        first["probabilities_0"], first["probabilities_1"]
    ]  # fmt: skip
    assert abs(sum(p) - 1.0) < 1e-4  # type: ignore[arg-type,call-overload]


def test_predictions_match_the_pipeline(
    fraud_model: Path, fraud_table: pa.Table, tmp_path: Path
) -> None:
    from augury.predict.pipeline import InferRequest

    source = write_table(fraud_table.slice(0, 2000), tmp_path / "in.parquet")
    run_job(fraud_model, source, tmp_path / "out.parquet", chunk_rows=512)
    rows = read_output(tmp_path / "out.parquet")
    pipeline = load_pipeline(fraud_model)
    features = {n: fraud_table[n].to_numpy()[:2000] for n in pipeline.accepted if n != "input"}
    want = pipeline.predict(InferRequest(features)).outputs
    got = [r["probabilities"][1] for r in rows]  # type: ignore[index]
    assert max(abs(a - b) for a, b in zip(got, want["probabilities"][:, 1], strict=True)) < 1e-6
    assert [r["label"] for r in rows] == list(want["label"])


def test_bad_rows_go_to_the_errors_file(
    fraud_model: Path, fraud_table: pa.Table, tmp_path: Path
) -> None:
    records = fraud_table.slice(0, 300).to_pylist()
    records[5]["log1p_C1"] = None  # missing feature
    records[7]["log1p_C2"] = "abc"  # not a number
    records[9]["log1p_C3"] = -5.0  # outside the declared range
    lines = [json.dumps(r) for r in records]
    lines.insert(12, "{not json")
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    summary = run_job(fraud_model, source, out, chunk_rows=64)
    errors = [json.loads(x) for x in Path(f"{out}.errors.jsonl").read_text().splitlines()]
    by_row = {e["row"]: e for e in errors}
    assert sorted(by_row) == [5, 7, 9, 12]
    assert "log1p_C1" in by_row[5]["error"] and "missing" in by_row[5]["error"]
    assert "must be a number" in by_row[7]["error"]
    assert "outside its range" in by_row[9]["error"]
    assert "invalid JSON" in by_row[12]["error"]
    assert by_row[5]["id"] == "t5"
    assert len(read_output(out)) == 297
    assert summary.counts.errors == 4 and summary.counts.ok == 297  # type: ignore[attr-defined]


def test_row_numbers_are_ids_without_an_id_column(
    fraud_model: Path, fraud_table: pa.Table, tmp_path: Path
) -> None:
    source = write_table(fraud_table.slice(0, 50), tmp_path / "in.csv")
    run_job(fraud_model, source, tmp_path / "out.jsonl", id_column=None, chunk_rows=16)
    assert [r["id"] for r in read_output(tmp_path / "out.jsonl")] == list(range(50))


def test_resume_skips_committed_rows_and_refuses_another_job(
    fraud_model: Path, fraud_table: pa.Table, tmp_path: Path
) -> None:
    source = write_table(fraud_table.slice(0, 1000), tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    run_job(fraud_model, source, out, chunk_rows=100)
    summary = run_job(fraud_model, source, out, chunk_rows=100)  # already done: a no-op
    assert summary.resumed_from == 1000  # type: ignore[attr-defined]
    assert ids_of(read_output(out)) == expected_ids(1000)
    ckpt = Path(f"{out}.checkpoint.json")
    data = json.loads(ckpt.read_text())
    data["fingerprint"] = {"input": "elsewhere"}
    ckpt.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="different job"):
        run_job(fraud_model, source, out, chunk_rows=100)
