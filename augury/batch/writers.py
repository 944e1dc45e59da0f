"""Sinks: where a job's results go, committed chunk by chunk and rolled back after a crash.

A sink's `commit()` makes everything written so far durable and returns a small state; after a
crash, `open(state)` rolls the sink back to exactly that state (files are truncated, later
Parquet parts deleted, later SQL rows deleted), so rows written after the last checkpoint are
written again, once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from augury.batch.checkpoint import fsync_dir

Rows: TypeAlias = pa.Table | list[dict[str, Any]]
"""A chunk of results: an Arrow table (predictive models) or records (language models)."""


class Sink(Protocol):
    def open(self, state: dict[str, Any] | None) -> None:
        """Start empty (`state` None) or roll back to a committed state."""
        ...

    def write(self, rows: Rows, row_numbers: NDArray[np.int64]) -> None:
        """Append results; `row_numbers` are the input rows they came from."""
        ...

    def commit(self) -> dict[str, Any]:
        """Make the writes durable; the returned state goes into the checkpoint."""
        ...

    def finish(self) -> None:
        """The job is complete: finalize the output."""
        ...

    def close(self) -> None: ...


def as_table(rows: Rows) -> pa.Table:
    return rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)


def as_records(rows: Rows) -> list[dict[str, Any]]:
    return rows.to_pylist() if isinstance(rows, pa.Table) else rows


def flatten_lists(table: pa.Table) -> pa.Table:
    """List columns (e.g. probabilities) as one column each: `name_0`, `name_1`, ... (CSV and
    SQL have no list type)."""
    columns: dict[str, pa.Array] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind):
            values = np.asarray(column.to_pylist(), dtype=np.float64)  # (n, k)
            width = values.shape[1] if values.ndim == 2 else 0
            for j in range(width):
                columns[f"{name}_{j}"] = pa.array(values[:, j])
        elif pa.types.is_struct(kind) or pa.types.is_map(kind):
            columns[name] = pa.array([json.dumps(v) for v in column.to_pylist()])
        else:
            columns[name] = column
    return pa.table(columns)


class _AppendFile:
    """A file that only grows; its committed state is its length in bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: Any = None

    def open(self, state: dict[str, Any] | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = int((state or {}).get("bytes", 0))
        # Kept open across commits; close() ends it.
        self.file = open(self.path, "ab" if self.path.exists() else "wb")  # noqa: SIM115
        self.file.truncate(size)  # drop what was written after the last commit
        self.file.seek(size)

    def commit(self) -> dict[str, Any]:
        self.file.flush()
        os.fsync(self.file.fileno())
        return {"bytes": self.file.tell()}

    def finish(self) -> None:
        self.commit()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class JsonlSink(_AppendFile):
    def write(self, rows: Rows, row_numbers: NDArray[np.int64]) -> None:
        lines = [json.dumps(r, ensure_ascii=False, default=_json_default) for r in as_records(rows)]
        if lines:
            self.file.write(("\n".join(lines) + "\n").encode())


class CsvSink(_AppendFile):
    def write(self, rows: Rows, row_numbers: NDArray[np.int64]) -> None:
        table = flatten_lists(as_table(rows))
        if table.num_rows == 0:
            return
        header = self.file.tell() == 0
        options = pacsv.WriteOptions(include_header=header)
        pacsv.write_csv(table, self.file, write_options=options)


class ParquetSink:
    """One Parquet part per commit in `<output>.parts/`; `finish()` merges them into the output
    (a Parquet file cannot be appended to after its footer is written)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self.pending: list[pa.Table] = []
        self.count = 0

    def open(self, state: dict[str, Any] | None) -> None:
        self.count = int((state or {}).get("parts", 0))
        if state is None and self.parts.exists():
            shutil.rmtree(self.parts)
        self.parts.mkdir(parents=True, exist_ok=True)
        for part in self.parts.glob("part-*.parquet"):
            if int(part.stem.split("-")[1]) >= self.count:
                part.unlink()

    def write(self, rows: Rows, row_numbers: NDArray[np.int64]) -> None:
        table = as_table(rows)
        if table.num_rows:
            self.pending.append(table)

    def commit(self) -> dict[str, Any]:
        if self.pending:
            table = pa.concat_tables(self.pending, promote_options="permissive")
            self.pending = []
            part = self.parts / f"part-{self.count:06d}.parquet"
            tmp = part.with_suffix(".tmp")
            pq.write_table(table, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, part)
            fsync_dir(self.parts)
            self.count += 1
        return {"parts": self.count}

    def finish(self) -> None:
        self.commit()
        parts = sorted(self.parts.glob("part-*.parquet"))
        tmp = self.path.with_name(self.path.name + ".tmp")
        writer: pq.ParquetWriter | None = None
        for part in parts:
            table = pq.read_table(part)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table.cast(writer.schema))
        if writer is None:
            pq.write_table(pa.table({}), tmp)
        else:
            writer.close()
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)

    def cleanup(self) -> None:
        """Remove the parts once the checkpoint records the job as done."""
        shutil.rmtree(self.parts, ignore_errors=True)

    def close(self) -> None:
        self.pending = []


def open_file_sink(path: Path, fmt: str) -> JsonlSink | CsvSink | ParquetSink:
    if fmt == "jsonl":
        return JsonlSink(path)
    if fmt == "csv":
        return CsvSink(path)
    if fmt == "parquet":
        return ParquetSink(path)
    raise ValueError(f"output format {fmt!r} is not supported; use jsonl, csv or parquet")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
