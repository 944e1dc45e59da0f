"""Progress of a job: a rich progress bar on a terminal, periodic log lines otherwise, and a
final summary."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from augury.batch.checkpoint import Counts
from augury.batch.job import JobSummary


class _Rates:
    """rows/s and tokens/s since the job (re)started."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows0 = 0
        self.tokens0 = 0

    def reset(self, counts: Counts) -> None:
        self.t0 = time.monotonic()
        self.rows0, self.tokens0 = counts.rows_done, counts.completion_tokens

    def rates(self, counts: Counts) -> tuple[float, float]:
        dt = max(time.monotonic() - self.t0, 1e-9)
        return (counts.rows_done - self.rows0) / dt, (counts.completion_tokens - self.tokens0) / dt


class BarProgress:
    """A rich progress bar: rows done/total, rows/s, tokens/s, ETA and errors so far."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.console = Console(file=stream or sys.stderr)
        self.bar = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("[red]{task.fields[errors]} errors"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task: TaskID | None = None
        self.rates = _Rates()

    def start(self, total: int | None, counts: Counts) -> None:
        self.rates.reset(counts)
        self.bar.start()
        self.task = self.bar.add_task(
            "batch", total=total, completed=counts.rows_done, rate="", errors=counts.errors
        )

    def update(self, counts: Counts) -> None:
        rows, tokens = self.rates.rates(counts)
        rate = f"{rows:,.0f} rows/s" + (f" {tokens:,.0f} tok/s" if tokens else "")
        assert self.task is not None
        self.bar.update(self.task, completed=counts.rows_done, rate=rate, errors=counts.errors)

    def finish(self, summary: JobSummary) -> None:
        self.bar.stop()
        self.console.print(summary_line(summary))


class LogProgress:
    """One plain line every `interval_s` seconds (and a summary), for logs and pipes."""

    def __init__(self, stream: IO[str] | None = None, interval_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.total: int | None = None
        self.last = 0.0
        self.rates = _Rates()

    def start(self, total: int | None, counts: Counts) -> None:
        self.total = total
        self.rates.reset(counts)
        self.last = time.monotonic()
        where = f" (resuming at row {counts.rows_done})" if counts.rows_done else ""
        self._print(f"batch: {total if total is not None else '?'} rows{where}")

    def update(self, counts: Counts) -> None:
        now = time.monotonic()
        if now - self.last < self.interval_s:
            return
        self.last = now
        rows, tokens = self.rates.rates(counts)
        total = self.total
        eta = ""
        if total and rows > 0:
            eta = f", ETA {max(total - counts.rows_done, 0) / rows:,.0f} s"
        pct = f" ({100 * counts.rows_done / total:.1f}%)" if total else ""
        self._print(
            f"batch: {counts.rows_done}/{total if total is not None else '?'} rows{pct}, "
            f"{rows:,.0f} rows/s, {tokens:,.0f} tok/s, {counts.errors} errors{eta}"
        )

    def finish(self, summary: JobSummary) -> None:
        self._print(summary_line(summary))

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def make_progress(stream: IO[str] | None = None, interval_s: float = 10.0) -> Any:
    """A bar on a terminal, log lines otherwise."""
    stream = stream or sys.stderr
    if stream.isatty():
        return BarProgress(stream)
    return LogProgress(stream, interval_s)


def summary_line(s: JobSummary) -> str:
    c = s.counts
    state = "cancelled" if s.cancelled else "done"
    resumed = f" (resumed at row {s.resumed_from})" if s.resumed_from else ""
    tokens = f", {c.completion_tokens:,} output tokens" if c.completion_tokens else ""
    return (
        f"batch {state}: {c.rows_done:,} rows read, {c.ok:,} ok, {c.errors:,} errors{tokens} "
        f"in {s.seconds:.1f} s ({s.rows_per_s:,.0f} rows/s){resumed}"
    )
