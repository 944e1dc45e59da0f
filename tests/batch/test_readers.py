"""Readers: pieces that can be read on their own (for Ray workers) are the same rows, with
the same row numbers, as one pass over the whole file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from augury.batch.readers import Chunk, piece_starts, read_chunks
from tests.batch.helpers import write_table


def rows_of(chunks: list[Chunk]) -> list[tuple[int, object]]:
    out: list[tuple[int, object]] = []
    for c in chunks:
        out += list(zip(c.rows.tolist(), c.as_records(), strict=True))
        out += [(row, reason) for row, reason in c.errors]
    return sorted(out, key=lambda r: r[0])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("start", [0, 7, 30])
def test_pieces_cover_the_rest_of_the_file(tmp_path: Path, fmt: str, start: int) -> None:
    table = pa.table({"id": [f"r{i}" for i in range(31)], "x": [float(i) for i in range(31)]})
    source = write_table(table, tmp_path / f"in.{fmt}")
    if fmt == "jsonl":  # a blank line and a broken one keep their row numbers
        lines = source.read_text().splitlines()
        lines[3], lines[12] = "", "{broken"
        source.write_text("\n".join(lines) + "\n")
    whole = list(read_chunks(source, fmt, 5, start))
    pieces = piece_starts(source, fmt, 5, start)
    assert [row for row, _ in pieces] == list(range(start, 31, 5))
    parts = [next(read_chunks(source, fmt, 5, row, offset)) for row, offset in pieces]
    assert [(c.start, c.num_rows) for c in parts] == [(c.start, c.num_rows) for c in whole]
    assert rows_of(parts) == rows_of(whole)


def test_jsonl_pieces_start_after_a_checkpoint_offset(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(10)))
    first = next(read_chunks(source, "jsonl", 4))
    pieces = piece_starts(source, "jsonl", 4, first.start + first.num_rows, first.end_offset)
    assert pieces == piece_starts(source, "jsonl", 4, 4)
    assert [next(read_chunks(source, "jsonl", 4, r, o)).as_records()[0] for r, o in pieces] == [
        {"i": 4},
        {"i": 8},
    ]
