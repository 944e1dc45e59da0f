"""The job runner: read chunks, run them through a task, commit results with a checkpoint.

    read_chunks -> task.run_chunk (a few chunks in flight) -> sinks.write -> commit -> checkpoint

Chunks are committed in input order, so the committed rows are always a prefix of the input
and a restarted job (same command, after `kill -9` or a server restart) goes on from the row
after the checkpoint. A row that fails goes to the errors sink with its reason; the job goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from augury.batch.checkpoint import Checkpoint, Counts, load_checkpoint, save_checkpoint
from augury.batch.readers import Chunk, count_rows, read_chunks
from augury.batch.writers import ParquetSink, Rows, Sink

log = logging.getLogger(__name__)


@dataclass
class ChunkResult:
    """What a task made of one chunk."""

    rows: Rows
    """One result per successful row (no id column: the runner adds it)."""
    positions: NDArray[np.int64]
    """For each result, its index among the chunk's readable rows."""
    errors: list[tuple[int, str]] = field(default_factory=list)
    """(index among the chunk's readable rows, reason) of the rows that failed."""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Task(Protocol):
    """Turns a chunk of input rows into results (a language model or a predictive model)."""

    async def run_chunk(self, chunk: Chunk) -> ChunkResult: ...


class Progress(Protocol):
    def start(self, total: int | None, counts: Counts) -> None: ...

    def update(self, counts: Counts) -> None: ...

    def finish(self, summary: JobSummary) -> None: ...


ChunkRunner = Callable[["Job", Checkpoint, "Progress | None"], Awaitable[None]]
"""Processes the chunks after a checkpoint and commits each, in order, with `Job.apply`."""

ErrorFormatter = Callable[[Any, int, str], dict[str, Any]]


def plain_error(row_id: Any, row: int, reason: str) -> dict[str, Any]:
    return {"id": row_id, "row": row, "error": reason}


@dataclass
class JobSpec:
    """One job: where rows come from and where results and errors go."""

    input: Path
    input_format: str
    checkpoint: Path
    fingerprint: dict[str, Any]
    id_column: str | None = None
    """Input column whose value identifies a row; None: the row number."""
    id_field: str = "id"
    """Name of the output column holding that identifier."""
    chunk_rows: int = 1024
    chunks_in_flight: int = 2
    """Chunks processed concurrently, so one chunk's stragglers never idle the model."""
    restart: bool = False
    """Ignore an existing checkpoint and start over."""
    format_error: ErrorFormatter = plain_error


@dataclass
class JobSummary:
    counts: Counts
    total: int | None
    seconds: float
    resumed_from: int
    cancelled: bool = False

    @property
    def rows_per_s(self) -> float:
        done = self.counts.rows_done - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0


class Job:
    """Runs one JobSpec with a task into a sink and an errors sink."""

    def __init__(self, spec: JobSpec, task: Task, sink: Sink, errors: Sink) -> None:
        self.spec = spec
        self.task = task
        self.sink = sink
        self.errors = errors
        self.cancelled = asyncio.Event()

    def cancel(self) -> None:
        """Stop after the chunk being committed; the checkpoint keeps what is done."""
        self.cancelled.set()

    def prepare(self) -> Checkpoint:
        """The checkpoint to go on from (a fresh one for a new job), sinks rolled back to it."""
        spec = self.spec
        ckpt = None if spec.restart else load_checkpoint(spec.checkpoint)
        if ckpt is not None and ckpt.fingerprint != spec.fingerprint:
            diff = sorted(
                k
                for k in set(ckpt.fingerprint) | set(spec.fingerprint)
                if ckpt.fingerprint.get(k) != spec.fingerprint.get(k)
            )
            raise ValueError(
                f"checkpoint {spec.checkpoint} belongs to a different job (differs in "
                f"{', '.join(diff)}); pass --restart to start over"
            )
        fresh = ckpt is None
        ckpt = ckpt or Checkpoint(fingerprint=spec.fingerprint)
        spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        self.sink.open(None if fresh else ckpt.sink)
        self.errors.open(None if fresh else ckpt.errors_sink)
        return ckpt

    async def run(
        self, progress: Progress | None = None, runner: ChunkRunner | None = None
    ) -> JobSummary:
        """Run to the end (or until cancelled). `runner` processes and commits the chunks
        after the checkpoint (default: here, a few chunks in flight; see batch/ray_runner.py)."""
        spec = self.spec
        ckpt = self.prepare()
        resumed_from = ckpt.counts.rows_done
        started = time.monotonic()
        total = await asyncio.to_thread(count_rows, spec.input, spec.input_format)
        if progress is not None:
            progress.start(total, ckpt.counts)
        try:
            if not ckpt.done:
                await (runner or Job._run_chunks)(self, ckpt, progress)
                if not self.cancelled.is_set():
                    await asyncio.to_thread(self._finish, ckpt)
        finally:
            self.sink.close()
            self.errors.close()
        summary = JobSummary(
            ckpt.counts, total, time.monotonic() - started, resumed_from, self.cancelled.is_set()
        )
        if progress is not None:
            progress.finish(summary)
        return summary

    async def _run_chunks(self, ckpt: Checkpoint, progress: Progress | None) -> None:
        spec = self.spec
        chunks = read_chunks(
            spec.input, spec.input_format, spec.chunk_rows, ckpt.counts.rows_done,
            ckpt.input_offset,
        )  # fmt: skip
        in_flight: deque[tuple[Chunk, asyncio.Task[ChunkResult]]] = deque()
        exhausted = False
        try:
            while True:
                while not exhausted and len(in_flight) < spec.chunks_in_flight:
                    if self.cancelled.is_set():
                        break
                    chunk = await asyncio.to_thread(next, chunks, None)
                    if chunk is None:
                        exhausted = True
                        break
                    in_flight.append((chunk, asyncio.ensure_future(self.task.run_chunk(chunk))))
                if not in_flight:
                    return
                chunk, running = in_flight[0]
                result = await self._wait(running)
                if result is None:
                    return  # cancelled: what is committed stays
                in_flight.popleft()
                await asyncio.to_thread(self._commit, ckpt, chunk, result)
                if progress is not None:
                    progress.update(ckpt.counts)
        finally:
            for _, running in in_flight:
                running.cancel()
            for _, running in in_flight:
                with contextlib.suppress(BaseException):
                    await running

    async def _wait(self, running: asyncio.Task[ChunkResult]) -> ChunkResult | None:
        stop = asyncio.ensure_future(self.cancelled.wait())
        try:
            await asyncio.wait([running, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if running.done():
            return running.result()
        return None

    def _commit(self, ckpt: Checkpoint, chunk: Chunk, result: ChunkResult) -> None:
        self.apply(ckpt, make_commit(self.spec, chunk, result))

    def apply(self, ckpt: Checkpoint, commit: Commit) -> None:
        """Write a processed chunk (the next one in input order) and save the checkpoint."""
        self.sink.write(commit.rows, commit.row_numbers)
        if commit.failures:
            self.errors.write(commit.failures, np.zeros(len(commit.failures), np.int64))
        c = ckpt.counts
        c.rows_done = commit.rows_done
        c.ok += commit.ok
        c.errors += len(commit.failures)
        c.prompt_tokens += commit.prompt_tokens
        c.completion_tokens += commit.completion_tokens
        ckpt.sink = self.sink.commit()
        ckpt.errors_sink = self.errors.commit()
        ckpt.input_offset = commit.end_offset
        save_checkpoint(self.spec.checkpoint, ckpt)

    def _finish(self, ckpt: Checkpoint) -> None:
        self.sink.finish()
        self.errors.finish()
        ckpt.done = True
        save_checkpoint(self.spec.checkpoint, ckpt)
        if isinstance(self.sink, ParquetSink):
            self.sink.cleanup()


Ids: TypeAlias = pa.Array | list[Any]


@dataclass
class Commit:
    """A processed chunk as the sinks take it: results with their ids, failures, counts (no
    input data, so a remote worker can send it back small)."""

    rows: Rows
    row_numbers: NDArray[np.int64]
    failures: list[dict[str, Any]]
    rows_done: int
    """Input rows consumed once this chunk is committed."""
    ok: int
    prompt_tokens: int
    completion_tokens: int
    end_offset: int | None


def make_commit(spec: JobSpec, chunk: Chunk, result: ChunkResult) -> Commit:
    ids = _ids(chunk, spec.id_column)
    rows = chunk.rows
    failures = [
        spec.format_error(_id_at(ids, int(p)), int(rows[p]), reason) for p, reason in result.errors
    ]
    failures += [
        spec.format_error(row if spec.id_column is None else str(row), row, reason)
        for row, reason in chunk.errors
    ]
    return Commit(
        rows=_with_ids(result.rows, spec.id_field, ids, result.positions),
        row_numbers=rows[result.positions],
        failures=failures,
        rows_done=chunk.start + chunk.num_rows,
        ok=len(result.positions),
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        end_offset=chunk.end_offset,
    )


def _ids(chunk: Chunk, id_column: str | None) -> Ids:
    """The identifier of each readable row: its id column (as text) or its row number; an
    Arrow array when the chunk is a table (no Python objects per row), else a list."""
    if id_column is None:
        return pa.array(chunk.rows) if chunk.records is None else chunk.rows.tolist()
    if chunk.records is None and chunk.table is not None:
        if id_column not in chunk.table.column_names:
            return pc.cast(pa.array(chunk.rows), pa.string())
        values = chunk.table[id_column]
        if pa.types.is_string(values.type) or pa.types.is_integer(values.type):
            text = pc.cast(values, pa.string())
            numbers = pc.cast(pa.array(chunk.rows), pa.string())
            return pc.if_else(pc.is_null(text), numbers, text).combine_chunks()
        listed = values.to_pylist()
    elif chunk.records is not None:
        listed = [r.get(id_column) for r in chunk.records]
    else:
        listed = [None] * len(chunk.rows)
    numbers = chunk.rows.tolist()
    return [str(v) if v is not None else str(n) for v, n in zip(listed, numbers, strict=True)]


def _id_at(ids: Ids, position: int) -> Any:
    return ids[position].as_py() if isinstance(ids, pa.Array) else ids[position]


def _with_ids(rows: Rows, id_field: str, ids: Ids, positions: NDArray[np.int64]) -> Rows:
    if isinstance(rows, pa.Table):
        if id_field in rows.column_names:
            return rows
        if isinstance(ids, pa.Array):
            picked = ids if len(positions) == len(ids) else ids.take(pa.array(positions))
        else:
            picked = pa.array([ids[int(p)] for p in positions])
        return rows.add_column(0, id_field, picked)
    listed = ids.to_pylist() if isinstance(ids, pa.Array) else ids
    return [{id_field: listed[int(p)], **r} for p, r in zip(positions, rows, strict=True)]
