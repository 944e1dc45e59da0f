"""What the dashboard lists besides the engine charts: batch jobs and streaming sessions.

A batch's rows/s is its average since it started (its counts move a chunk at a time, too
coarse for a recent rate). A session's events/s and results/s come from differencing its
counters between the dashboard's polls (`RateSampler`), so nothing runs while nobody watches.
Only public, read-only parts of the batch store and the stream manager are read here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from augury.server.web.protocol import JobItem, RequestCounts, StreamItem

if TYPE_CHECKING:
    from augury.stream.checkpoint import Checkpoint
    from augury.stream.manager import StreamManager
    from augury.stream.session import Session

FINISHED_AT = ("completed_at", "failed_at", "cancelled_at", "expired_at")
"""Batch fields that, once set, mark when it stopped."""


class RateSampler:
    """Per-item rates of growing counters over the last `window_s` seconds of samples.

    Each poll adds a sample (time, counters) per item; the rate is the difference between the
    newest sample and the oldest one kept, over the time between them. The oldest kept is the
    newest one at least `window_s` old, so the window covers `window_s` once polls span it.
    """

    def __init__(self, window_s: float = 10.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 seconds, got {window_s}")
        self.window_s = window_s
        self._history: dict[str, deque[tuple[float, tuple[float, ...]]]] = {}

    def rates(self, key: str, values: Sequence[float], now: float) -> list[float | None]:
        """Per-second rates of `values` for item `key`; None until a second sample arrives."""
        history = self._history.setdefault(key, deque())
        if history and len(history[-1][1]) != len(values):
            history.clear()  # a different set of counters: start over
        history.append((now, tuple(values)))
        while len(history) > 2 and now - history[1][0] >= self.window_s:
            history.popleft()
        start, before = history[0]
        span = now - start
        if span <= 0:
            return [None] * len(values)
        # A counter that went down (a restarted item) reads as no progress, not negative.
        return [max(0.0, (v - b) / span) for b, v in zip(before, values, strict=True)]

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget every item not in `keys` (they left the list)."""
        keep = set(keys)
        for key in [k for k in self._history if k not in keep]:
            del self._history[key]

    def __len__(self) -> int:
        return len(self._history)


# -- batch jobs --------------------------------------------------------------------------------


def finished_at(batch: dict[str, Any]) -> int | None:
    """When a batch stopped (completed, failed, cancelled or expired), or None."""
    stops = [batch[k] for k in FINISHED_AT if batch.get(k) is not None]
    return max(stops) if stops else None


def first_error(batch: dict[str, Any]) -> str | None:
    errors = batch.get("errors") or {}
    data = errors.get("data") if isinstance(errors, dict) else None
    if not data:
        return None
    message = data[0].get("message")
    return str(message) if message is not None else None


def job_item(batch: dict[str, Any], now: float) -> JobItem:
    """The dashboard row of one batch (the body the Batch API answers)."""
    counts = RequestCounts.model_validate(batch.get("request_counts") or {})
    done = counts.completed + counts.failed
    status = str(batch["status"])
    if counts.total > 0:
        progress: float | None = min(1.0, done / counts.total)
    else:
        progress = 1.0 if status == "completed" else None
    started = batch.get("in_progress_at")
    stopped = finished_at(batch)
    end = now if stopped is None else stopped
    rows_per_s = done / (end - started) if started is not None and end > started else None
    return JobItem(
        id=batch["id"],
        status=status,
        endpoint=str(batch.get("endpoint") or ""),
        request_counts=counts,
        progress=progress,
        rows_per_s=rows_per_s,
        created_at=int(batch["created_at"]),
        in_progress_at=started,
        finished_at=stopped,
        error=first_error(batch),
    )


def job_items(batches: list[dict[str, Any]], limit: int, now: float | None = None) -> list[JobItem]:
    """The newest `limit` batches (the store lists newest first) as dashboard rows."""
    now = time.time() if now is None else now
    return [job_item(b, now) for b in batches[:limit]]


# -- streaming sessions ------------------------------------------------------------------------


def live_item(session: Session, sampler: RateSampler, now: float) -> StreamItem:
    c = session.core.counters
    events_per_s, results_per_s = sampler.rates(session.id, [c.events_received, c.windows], now)
    spec = session.core.spec
    return StreamItem(
        id=session.id,
        model=spec.model,
        key_name=session.key_name,
        state="live",
        channels=list(spec.channels),
        events_in=c.events_received,
        results_out=c.windows,
        duplicates=c.duplicates,
        late_dropped=c.late_dropped,
        # The queue's own count is current; the counter is copied from it by the worker.
        queue_dropped=max(c.queue_dropped, session.queue.dropped),
        queued=len(session.queue),
        events_per_s=events_per_s,
        results_per_s=results_per_s,
        resumable_until=None,
    )


def resumable_item(checkpoint: Checkpoint, timeout_s: float) -> StreamItem:
    counters: dict[str, Any] = checkpoint.core.get("counters", {})
    return StreamItem(
        id=checkpoint.session_id,
        model=str(checkpoint.spec.get("model", "")),
        key_name=checkpoint.key_name,
        state="resumable",
        channels=[str(c) for c in checkpoint.spec.get("channels", [])],
        events_in=int(counters.get("events_received", 0)),
        results_out=int(counters.get("windows", 0)),
        duplicates=int(counters.get("duplicates", 0)),
        late_dropped=int(counters.get("late_dropped", 0)),
        queue_dropped=int(counters.get("queue_dropped", 0)),
        queued=0,
        events_per_s=0.0,  # detached: nothing flows until the client resumes
        results_per_s=0.0,
        resumable_until=checkpoint.saved_at + timeout_s,
    )


class StreamActivity:
    """Live and resumable sessions of a StreamManager, with rates.

    The manager lists live sessions; its checkpoint store answers by id only, so resumable
    sessions are the ones this object saw live on an earlier poll, plus those whose checkpoint
    file is in the store's folder (they survived a restart)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.sampler = RateSampler(window_s)
        self._seen: set[str] = set()

    def items(
        self, manager: StreamManager, limit: int = 100, now: float | None = None
    ) -> list[StreamItem]:
        """Up to `limit` sessions: live ones first, then resumable ones by id."""
        now = time.time() if now is None else now
        live = list(manager.live.values())  # a snapshot: sessions come and go between awaits
        shown = live[:limit]
        self.sampler.keep_only(s.id for s in shown)
        rows = [live_item(s, self.sampler, now) for s in shown]
        # The store's lookup expires old checkpoints on every call: look up no more than shown.
        known = {s.id for s in live}
        timeout_s = manager.config.resume_timeout_s
        for session_id in sorted((self._seen | set(self._checkpoint_files(manager))) - known):
            if len(rows) >= limit:
                known.add(session_id)  # not looked up: still a candidate next time
                continue
            checkpoint = manager.store.get(session_id)
            if checkpoint is not None:
                rows.append(resumable_item(checkpoint, timeout_s))
                known.add(session_id)
        self._seen = known
        return rows

    @staticmethod
    def _checkpoint_files(manager: StreamManager) -> list[str]:
        folder = manager.config.checkpoint_dir
        if folder is None or not folder.is_dir():
            return []
        return [path.stem for path in folder.glob("*.json")]
