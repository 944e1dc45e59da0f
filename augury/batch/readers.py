"""Streaming readers: JSONL, CSV and Parquet files in chunks of rows, resumable at any row.

Every row has a row number: its 0-based line in a JSONL file (blank lines are skipped but keep
their number), its 0-based data row in a CSV or Parquet file. A JSONL line that is not a JSON
object is a row error, reported with the chunk; the reading goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

FORMATS = ("jsonl", "csv", "parquet")


def detect_format(path: str | Path, given: str | None = None) -> str:
    """`given`, or the format named by the file's extension."""
    if given:
        if given not in FORMATS:
            raise ValueError(f"format {given!r} is not supported; use one of {list(FORMATS)}")
        return given
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "csv": "csv"}.get(suffix)
    if fmt is None and suffix in ("parquet", "pq"):
        fmt = "parquet"
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its extension; "
            f"pass --input-format / --output-format ({', '.join(FORMATS)})"
        )
    return fmt


@dataclass
class Chunk:
    """Consecutive input rows [start, start + num_rows): the readable ones, as records or as
    an Arrow table (whichever the reader had; the other is built on demand)."""

    start: int
    num_rows: int
    rows: NDArray[np.int64]
    """Row number of each readable row, in order."""
    records: list[dict[str, Any]] | None = None
    table: pa.Table | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)
    """(row number, reason) of rows that could not be parsed."""
    end_offset: int | None = None
    """Byte offset just past this chunk (JSONL), where a resumed job starts reading."""

    def as_records(self) -> list[dict[str, Any]]:
        if self.records is None:
            assert self.table is not None
            self.records = self.table.to_pylist()
        return self.records

    def as_table(self) -> pa.Table:
        if self.table is None:
            assert self.records is not None
            self.table = pa.Table.from_pylist(self.records)
        return self.table


def count_rows(path: Path, fmt: str) -> int | None:
    """Rows in the file (JSONL/CSV: lines, a fast byte scan; exact for Parquet)."""
    if fmt == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    lines = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            lines += block.count(b"\n")
        f.seek(0, 2)
        if f.tell() > 0:
            f.seek(-1, 2)
            lines += f.read(1) != b"\n"
    return max(lines - (1 if fmt == "csv" else 0), 0)


def read_chunks(
    path: Path, fmt: str, chunk_rows: int, start_row: int = 0, start_offset: int | None = None
) -> Iterator[Chunk]:
    """Chunks of at most `chunk_rows` rows from row `start_row` on (JSONL and CSV: from byte
    `start_offset` when given, which must be where row `start_row` begins)."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if fmt == "jsonl":
        return _jsonl(path, chunk_rows, start_row, start_offset)
    if fmt == "csv":
        if start_offset is not None:
            return _arrow_chunks(_csv_batches(path, start_offset), chunk_rows, start_row, start_row)
        return _arrow_chunks(_csv_batches(path), chunk_rows, start_row)
    if fmt == "parquet":
        return _parquet(path, chunk_rows, start_row)
    raise ValueError(f"format {fmt!r} is not supported; use one of {list(FORMATS)}")


def _jsonl(path: Path, chunk_rows: int, row: int, offset: int | None) -> Iterator[Chunk]:
    with open(path, "rb") as f:
        if offset is not None:
            f.seek(offset)
        else:
            for _ in range(row):
                if not f.readline():
                    break
        while True:
            start, records, rows, errors = row, [], [], []
            while row - start < chunk_rows:
                line = f.readline()
                if not line:
                    break
                number, row = row, row + 1
                if not line.strip():
                    continue
                record, error = parse_json_row(line)
                if error is not None:
                    errors.append((number, error))
                else:
                    records.append(record)
                    rows.append(number)
            if row == start:
                return
            yield Chunk(
                start, row - start, np.array(rows, np.int64), records=records, errors=errors,
                end_offset=f.tell(),
            )  # fmt: skip


def parse_json_row(line: bytes) -> tuple[dict[str, Any], str | None]:
    """A record from one JSONL line; a bare JSON string is a prompt."""
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, f"invalid JSON: {exc}"
    if isinstance(value, str):
        return {"prompt": value}, None
    if not isinstance(value, dict):
        return {}, f"a row must be a JSON object (or a string prompt), got {type(value).__name__}"
    return value, None


def _csv_batches(path: Path, offset: int | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of a CSV file; from byte `offset` (the start of a data row) when given,
    with the header's column names."""
    if offset is None:
        yield from pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22))
        return
    names = pacsv.open_csv(path).schema.names
    with open(path, "rb") as f:
        f.seek(offset)
        options = pacsv.ReadOptions(block_size=1 << 22, column_names=names)
        yield from pacsv.open_csv(f, read_options=options)


def piece_starts(
    path: Path, fmt: str, piece_rows: int, start_row: int = 0, start_offset: int | None = None
) -> list[tuple[int, int | None]]:
    """(first row, its byte offset) of consecutive pieces of `piece_rows` rows from
    `start_row` to the end, so that each piece can be read on its own (Parquet: no offsets,
    row groups are skipped). CSV rows are lines here: no newlines inside quoted fields."""
    if fmt == "parquet":
        total = int(pq.ParquetFile(path).metadata.num_rows)
        return [(row, None) for row in range(start_row, total, piece_rows)]
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"format {fmt!r} is not supported; use one of {list(FORMATS)}")
    if start_offset is None:  # find where row `start_row` begins
        skip = start_row + (1 if fmt == "csv" else 0)
        start_offset = _line_starts(path, 0, 0, skip)[-1] if skip else 0
    starts = _line_starts(path, start_offset, piece_rows)
    return [(start_row + i * piece_rows, offset) for i, offset in enumerate(starts)]


def _line_starts(path: Path, offset: int, every: int, only: int | None = None) -> list[int]:
    """Byte offsets of the lines from `offset` on: every `every`-th line's start (the first
    included) before the end of the file, or (`only`) just the start of the `only`-th line."""
    starts = [] if only is not None else [offset]
    size = path.stat().st_size
    if offset >= size:
        return [size] if only is not None else []
    lines = 0  # newlines seen since `offset`
    with open(path, "rb") as f:
        f.seek(offset)
        at = offset
        while block := f.read(1 << 24):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + at + 1  # next starts
            counts = np.arange(lines + 1, lines + 1 + len(ends))  # lines before each start
            if only is not None:
                hit = np.flatnonzero(counts == only)
                if len(hit):
                    return [int(ends[hit[0]])]
            else:
                starts += [int(e) for e in ends[counts % every == 0] if e < size]
            lines += len(ends)
            at += len(block)
    return [size] if only is not None else starts


def _parquet(path: Path, chunk_rows: int, start_row: int) -> Iterator[Chunk]:
    pf = pq.ParquetFile(path)
    # Skip whole row groups without reading them, then the rest row by row.
    first_group, skipped = 0, 0
    meta = pf.metadata
    while first_group < meta.num_row_groups:
        n = meta.row_group(first_group).num_rows
        if skipped + n > start_row:
            break
        skipped += n
        first_group += 1
    groups = list(range(first_group, meta.num_row_groups))
    batches = pf.iter_batches(batch_size=chunk_rows, row_groups=groups) if groups else iter(())
    return _arrow_chunks(batches, chunk_rows, start_row, first_row=skipped)


def _arrow_chunks(
    batches: Iterator[pa.RecordBatch], chunk_rows: int, start_row: int, first_row: int = 0
) -> Iterator[Chunk]:
    """Re-cut record batches into chunks of `chunk_rows`, dropping rows before `start_row`."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    row = first_row  # number of the first row in `pending`
    for batch in batches:
        if row + pending_rows + batch.num_rows <= start_row:
            row += batch.num_rows
            continue
        if row < start_row:
            batch = batch.slice(start_row - row)
            row = start_row
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield _table_chunk(row, table.slice(0, chunk_rows))
            rest = table.slice(chunk_rows)
            pending, pending_rows = list(rest.to_batches()), rest.num_rows
            row += chunk_rows
    if pending_rows:
        yield _table_chunk(row, pa.Table.from_batches(pending))


def _table_chunk(start: int, table: pa.Table) -> Chunk:
    rows = np.arange(start, start + table.num_rows, dtype=np.int64)
    return Chunk(start, table.num_rows, rows, table=table.combine_chunks())
