"""The predictive task: a chunk is one pipeline call; bad rows are split out after one
vectorized check, so they cost one call each plus one for the rest (no bisection)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from augury.batch.predict_task import PredictTask, load_pipeline
from augury.batch.readers import Chunk
from augury.predict.pipeline import InferRequest


def chunk_of(table: pa.Table) -> Chunk:
    return Chunk(0, table.num_rows, np.arange(table.num_rows, dtype=np.int64), table=table)


def counting(task: PredictTask) -> list[int]:
    """Wraps the pipeline's execute: the row count of each call."""
    calls: list[int] = []
    execute = task.pipeline.execute

    def wrapped(requests: Any) -> Any:
        calls.append(len(next(iter(requests[0].inputs.values()))))
        return execute(requests)

    task.pipeline.execute = wrapped  # type: ignore[method-assign]
    return calls


def test_a_clean_chunk_is_one_call(fraud_model: Path, fraud_table: pa.Table) -> None:
    task = PredictTask(load_pipeline(fraud_model))
    calls = counting(task)
    result = task.run_sync(chunk_of(fraud_table.slice(0, 4096)))
    assert calls == [4096] and not result.errors
    assert result.positions.tolist() == list(range(4096))


def test_bad_rows_are_split_out_in_a_few_calls(fraud_model: Path, fraud_table: pa.Table) -> None:
    table = fraud_table.slice(0, 4096)
    bad = [17, 1000, 4095]
    column = table["log1p_C2"].to_numpy().copy()
    column[bad] = [-1.0, 1e9, np.nan]  # below min, above max, missing (required)
    table = table.set_column(table.schema.get_field_index("log1p_C2"), "log1p_C2", [column])
    task = PredictTask(load_pipeline(fraud_model))
    calls = counting(task)
    result = task.run_sync(chunk_of(table))
    # one refused call, one per bad row (for its message), one for the rest
    assert sorted(calls) == [1, 1, 1, 4093, 4096]
    assert [p for p, _ in result.errors] == bad
    reasons = [r for _, r in result.errors]
    assert "outside its range" in reasons[0] and "outside its range" in reasons[1]
    assert "required but missing" in reasons[2] and all("log1p_C2" in r for r in reasons)
    good = np.setdiff1d(np.arange(4096), bad)
    assert result.positions.tolist() == good.tolist()
    pipeline = load_pipeline(fraud_model)
    features = {n: table[n].to_numpy()[good] for n in pipeline.accepted if n != "input"}
    want = pipeline.predict(InferRequest(features)).outputs
    got = np.array(result.rows["probabilities"].to_pylist())  # type: ignore[call-overload]
    np.testing.assert_allclose(got, want["probabilities"], atol=1e-6)
    assert result.rows["label"].to_pylist() == list(want["label"])  # type: ignore[call-overload]
