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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
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

    async def run(self, progress: Progress | None = None) -> JobSummary:
        spec = self.spec
        ckpt = self.prepare()
        resumed_from = ckpt.counts.rows_done
        started = time.monotonic()
        total = await asyncio.to_thread(count_rows, spec.input, spec.input_format)
        if progress is not None:
            progress.start(total, ckpt.counts)
        try:
            if not ckpt.done:
                await self._run_chunks(ckpt, progress)
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
        spec = self.spec
        ids = _ids(chunk, spec.id_column)
        rows = chunk.rows
        self.sink.write(_with_ids(result.rows, spec.id_field, ids, result.positions),
                        rows[result.positions])  # fmt: skip
        failures = [
            spec.format_error(ids[int(p)], int(rows[p]), reason) for p, reason in result.errors
        ]
        failures += [
            spec.format_error(row if spec.id_column is None else str(row), row, reason)
            for row, reason in chunk.errors
        ]
        if failures:
            self.errors.write(failures, np.zeros(len(failures), np.int64))
        c = ckpt.counts
        c.rows_done = chunk.start + chunk.num_rows
        c.ok += len(result.positions)
        c.errors += len(failures)
        c.prompt_tokens += result.prompt_tokens
        c.completion_tokens += result.completion_tokens
        ckpt.sink = self.sink.commit()
        ckpt.errors_sink = self.errors.commit()
        ckpt.input_offset = chunk.end_offset
        save_checkpoint(spec.checkpoint, ckpt)

    def _finish(self, ckpt: Checkpoint) -> None:
        self.sink.finish()
        self.errors.finish()
        ckpt.done = True
        save_checkpoint(self.spec.checkpoint, ckpt)
        if isinstance(self.sink, ParquetSink):
            self.sink.cleanup()


def _ids(chunk: Chunk, id_column: str | None) -> list[Any]:
    """The identifier of each readable row: its id column (as text) or its row number."""
    numbers = chunk.rows.tolist()
    if id_column is None:
        return numbers
    if chunk.records is not None:
        values = [r.get(id_column) for r in chunk.records]
    elif id_column in chunk.as_table().column_names:
        values = chunk.as_table()[id_column].to_pylist()
    else:
        values = [None] * len(numbers)
    return [str(v) if v is not None else str(n) for v, n in zip(values, numbers, strict=True)]


def _with_ids(rows: Rows, id_field: str, ids: list[Any], positions: NDArray[np.int64]) -> Rows:
    picked = [ids[int(p)] for p in positions]
    if isinstance(rows, pa.Table):
        if id_field in rows.column_names:
            return rows
        return rows.add_column(0, id_field, pa.array(picked))
    return [{id_field: i, **r} for i, r in zip(picked, rows, strict=True)]
