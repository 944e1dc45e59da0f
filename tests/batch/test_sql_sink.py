"""Results into a SQL table: SQLite always; PostgreSQL at AUGURY_TEST_POSTGRES_URL, or a
throwaway server when the PostgreSQL binaries are installed (skipped, saying why, otherwise)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
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
from tests.batch.postgres import postgres_url


@pytest.fixture(scope="module")
def postgres() -> Iterator[str | None]:
    """A PostgreSQL URL, or None (with the reason kept for the skip)."""
    try:
        with postgres_url() as url:
            yield url
    except LookupError as exc:
        POSTGRES_MISSING.append(str(exc))
        yield None


POSTGRES_MISSING: list[str] = []


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'out.db'}"
    found: str | None = request.getfixturevalue("postgres")
    if found is None:
        pytest.skip(POSTGRES_MISSING[-1] if POSTGRES_MISSING else "no PostgreSQL server")
    return found


def test_sql_sink(fraud_model: Path, fraud_table: pa.Table, tmp_path: Path, url: str) -> None:
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
