"""Results into a SQL table: SQLite always, PostgreSQL when AUGURY_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from augury.batch.job import Job, JobSpec
from augury.batch.predict_task import PredictTask, load_pipeline
from augury.batch.sql_sink import SqlSink
from augury.batch.writers import JsonlSink
from tests.batch.helpers import expected_ids, write_table


def urls(tmp: Path) -> list[str]:
    found = [f"sqlite:///{tmp / 'out.db'}"]
    if os.environ.get("AUGURY_TEST_POSTGRES_URL"):
        found.append(os.environ["AUGURY_TEST_POSTGRES_URL"])
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sql_sink(fraud_model: Path, fraud_table: pa.Table, tmp_path: Path, backend: str) -> None:
    url = next((u for u in urls(tmp_path) if u.startswith(backend)), None)
    if url is None:
        pytest.skip("no PostgreSQL server: set AUGURY_TEST_POSTGRES_URL=postgresql://... to test")
    source = write_table(fraud_table.slice(0, 700), tmp_path / "in.parquet")
    spec = JobSpec(input=source, input_format="parquet", checkpoint=tmp_path / "ckpt.json",
                   fingerprint={"t": 1}, id_column="txn", chunk_rows=100)  # fmt: skip
    task = PredictTask(load_pipeline(fraud_model))
    asyncio.run(Job(spec, task, SqlSink(url, "scores"), JsonlSink(tmp_path / "e.jsonl")).run())
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, label, probabilities_1, _row FROM scores "
                                    "ORDER BY _row")).all()  # fmt: skip
    assert [r[0] for r in rows] == expected_ids(700)
    assert {r[1] for r in rows} <= {"legit", "fraud"}

    # A crash after the database commit but before the checkpoint: rows past the checkpoint
    # are in the table; reopening at the checkpoint's state removes them.
    sink = SqlSink(url, "scores")
    sink.open({"row_end": 500})
    sink.write([{"id": "extra", "label": "x", "probabilities_0": 0.0, "probabilities_1": 1.0}],
               np.array([999], np.int64))  # fmt: skip
    state = sink.commit()
    sink.close()
    assert state == {"row_end": 1000}
    again = SqlSink(url, "scores")
    again.open({"row_end": 500})
    again.close()
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT COUNT(*), MAX(_row) FROM scores")).one()
    assert tuple(count) == (500, 499)
