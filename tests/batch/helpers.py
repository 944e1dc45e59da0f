"""Small helpers shared by the batch tests."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def write_table(table: pa.Table, path: Path) -> Path:
    """`table` as JSONL, CSV or Parquet (by the file's extension)."""
    if path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=1000)
    elif path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        with open(path, "w") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row) + "\n")
    return path


def read_output(path: Path) -> list[dict[str, object]]:
    if path.suffix == ".parquet":
        return list(pq.read_table(path).to_pylist())
    if path.suffix == ".csv":
        return list(pacsv.read_csv(path).to_pylist())
    return [json.loads(line) for line in path.read_text().splitlines()]


def ids_of(rows: list[dict[str, object]]) -> list[str]:
    return [str(r["id"]) for r in rows]


def expected_ids(n: int) -> list[str]:
    return [f"t{i}" for i in range(n)]
