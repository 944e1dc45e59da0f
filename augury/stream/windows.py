"""Events in time order, cut into sliding windows by count or by time.

    ReorderBuffer   events in arrival order -> events in timestamp order (late ones dropped)
    CountWindower   window k covers events [k * stride, k * stride + size) of the ordered stream
    TimeWindower    window k covers [a_k, a_k + size), a_k = a_0 + k * stride, where a_0 is the
                    first event's time rounded down to a multiple of the stride

A window is emitted as soon as it is complete: a count window when its last event arrives, a
time window when an event at or after its end arrives. Time windows with no events are skipped.
Both windowers accept stride <= size (overlapping or tumbling) and stride > size (gaps).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


@dataclass(slots=True)
class Event:
    """One timestamped sample of every channel."""

    id: int
    """The client's sequence number: strictly increasing in send order (dedup on resume)."""
    t: float
    """Event time in seconds."""
    values: F64
    """(c,) one value per declared channel."""
    label: float | None = None
    """A training target for online models, when the client knows it."""

    def to_json(self) -> list[Any]:
        return [self.id, self.t, self.values.tolist(), self.label]

    @classmethod
    def from_json(cls, row: list[Any]) -> Event:
        return cls(int(row[0]), float(row[1]), np.asarray(row[2], dtype=np.float64), row[3])


@dataclass(frozen=True, slots=True)
class Window:
    """A complete window, ready for feature extraction."""

    index: int
    """0, 1, 2, ... in emission order."""
    start: float
    """Nominal span [start, end): first and last event time (+0) for count windows."""
    end: float
    times: F64
    """(n,) event times, ascending."""
    values: F64
    """(n, c) event values."""
    ids: list[int]
    """Ids of the events the window covers, in time order."""
    label: float | None
    """The latest label among its events (None when none is labelled)."""


def make_window(index: int, start: float, end: float, events: list[Event]) -> Window:
    labels = [e.label for e in events if e.label is not None]
    return Window(
        index=index,
        start=start,
        end=end,
        times=np.fromiter((e.t for e in events), dtype=np.float64, count=len(events)),
        values=np.stack([e.values for e in events]),  # (n, c)
        ids=[e.id for e in events],
        label=labels[-1] if labels else None,
    )


LatePolicy = Literal["reorder", "drop"]


class ReorderBuffer:
    """Holds events until the watermark (latest time seen minus `bound` seconds) passes them,
    then releases them in time order. An event behind the watermark is late and dropped; with
    policy "drop" the bound is 0, so every out-of-order event is dropped."""

    def __init__(self, policy: LatePolicy, bound: float) -> None:
        if policy not in ("reorder", "drop"):
            raise ValueError(f"late policy must be 'reorder' or 'drop', got {policy!r}")
        if bound < 0 or not math.isfinite(bound):
            raise ValueError(f"reorder bound must be a finite number >= 0 seconds, got {bound}")
        self.bound = bound if policy == "reorder" else 0.0
        self._heap: list[tuple[float, int, Event]] = []
        self.max_t = -math.inf
        self.released_t = -math.inf
        self.reordered = 0
        """Events that arrived out of order and were put back in place."""
        self.dropped_late = 0
        """Events that arrived after their place had been released."""

    def push(self, event: Event) -> list[Event]:
        """Accept one event; returns the events now released, in time order."""
        if self.bound == 0.0:  # nothing is held back: in order or late
            if event.t < self.max_t:
                self.dropped_late += 1
                return []
            self.max_t = self.released_t = event.t
            return [event]
        if event.t < self.max_t - self.bound:  # behind the watermark: its place may be gone
            self.dropped_late += 1
            return []
        if event.t < self.max_t:
            self.reordered += 1
        self.max_t = max(self.max_t, event.t)
        heapq.heappush(self._heap, (event.t, event.id, event))
        watermark = self.max_t - self.bound
        out: list[Event] = []
        while self._heap and self._heap[0][0] <= watermark:
            out.append(heapq.heappop(self._heap)[2])
        if out:
            self.released_t = out[-1].t
        return out

    def flush(self) -> list[Event]:
        """Release everything held (end of stream)."""
        out = [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]
        if out:
            self.released_t = out[-1].t
        return out

    def state(self) -> dict[str, Any]:
        held = [entry[2].to_json() for entry in sorted(self._heap)]
        return {
            "held": held,
            "max_t": self.max_t,
            "released_t": self.released_t,
            "reordered": self.reordered,
            "dropped_late": self.dropped_late,
        }

    def load(self, state: dict[str, Any]) -> None:
        events = [Event.from_json(row) for row in state["held"]]
        self._heap = [(e.t, e.id, e) for e in events]
        heapq.heapify(self._heap)
        self.max_t, self.released_t = float(state["max_t"]), float(state["released_t"])
        self.reordered, self.dropped_late = int(state["reordered"]), int(state["dropped_late"])


class CountWindower:
    """Windows of `size` events every `stride` events.

    Events are kept in preallocated arrays (times, values, ids) rather than a list of
    objects, so a window is a slice; rows [head, head + n) hold stream positions
    [first, first + n). A row is written once: the arrays are replaced, not overwritten,
    when they fill up, so a window's arrays are views that stay valid (until `load`).
    Only the latest labelled event is remembered: it is the latest label of a window exactly
    when its position falls inside the window.
    """

    def __init__(self, size: int, stride: int) -> None:
        if size < 1 or stride < 1:
            raise ValueError(f"count windows need size >= 1 and stride >= 1, got {size}, {stride}")
        self.size, self.stride = int(size), int(stride)
        capacity = min(2 * self.size, 4096) + 64  # grows while more rows must be held
        self._times = np.empty(capacity)  # (capacity,)
        self._ids = np.empty(capacity, dtype=np.int64)  # (capacity,)
        self._values: F64 | None = None  # (capacity, c), allocated at the first event
        self._head = 0
        self._n = 0
        self._first = 0  # stream position of row _head
        self._seen = 0  # events pushed so far
        self._emitted = 0
        self._label: tuple[int, float] | None = None  # (position, label) of the latest one

    def push(self, event: Event) -> list[Window]:
        position = self._seen  # of this event in the ordered stream
        self._seen += 1
        if event.label is not None:
            self._label = (position, event.label)
        start = self._emitted * self.stride  # of the next window
        if position < start:  # stride > size: the event falls between two windows
            return []
        if not self._n:
            self._first = position
        self._append(event)
        if position < start + self.size - 1:
            return []
        window = self._window(start)  # rows hold exactly positions [start, start + size)
        self._emitted += 1
        drop = min(self._n, self._emitted * self.stride - self._first)
        self._head, self._n, self._first = self._head + drop, self._n - drop, self._first + drop
        return [window]

    def _append(self, event: Event) -> None:
        if self._values is None or self._values.shape[1] != event.values.shape[0]:
            self._values = np.empty((self._times.shape[0], event.values.shape[0]))
        if self._head + self._n == self._times.shape[0]:
            self._compact()
        row = self._head + self._n
        self._times[row], self._ids[row], self._values[row] = event.t, event.id, event.values
        self._n += 1

    def _compact(self) -> None:
        """Move the held rows to the front, doubling the arrays when they are half full (so
        a move happens at most once per `capacity - n` events)."""
        assert self._values is not None
        capacity = self._times.shape[0]
        if 2 * self._n > capacity:
            capacity *= 2
        rows = slice(self._head, self._head + self._n)
        times, ids = np.empty(capacity), np.empty(capacity, dtype=np.int64)
        values = np.empty((capacity, self._values.shape[1]))
        times[: self._n], ids[: self._n], values[: self._n] = (
            self._times[rows],
            self._ids[rows],
            self._values[rows],
        )
        self._times, self._ids, self._values, self._head = times, ids, values, 0

    def _window(self, start: int) -> Window:
        assert self._values is not None and start == self._first and self._n == self.size
        rows = slice(self._head, self._head + self.size)
        times = self._times[rows]  # (size,)
        label = self._label[1] if self._label and self._label[0] >= start else None
        return Window(  # views, not copies: rows are written once (see `_append`)
            index=self._emitted,
            start=float(times[0]),
            end=float(times[-1]),
            times=times,
            values=self._values[rows],  # (size, c)
            ids=self._ids[rows].tolist(),
            label=label,
        )

    def _held(self) -> list[Event]:
        if self._values is None:
            return []
        out = []
        for i in range(self._n):
            row = self._head + i
            label = self._label[1] if self._label and self._label[0] == self._first + i else None
            out.append(
                Event(int(self._ids[row]), float(self._times[row]), self._values[row], label)
            )
        return out

    def state(self) -> dict[str, Any]:
        return {
            "buffer": [e.to_json() for e in self._held()],
            "first": self._first,
            "seen": self._seen,
            "emitted": self._emitted,
        }

    def load(self, state: dict[str, Any]) -> None:
        self._head = self._n = 0
        self._label = None
        self._first = int(state["first"])
        for i, row in enumerate(state["buffer"]):
            event = Event.from_json(row)
            self._append(event)
            if event.label is not None:
                self._label = (self._first + i, event.label)
        self._seen, self._emitted = int(state["seen"]), int(state["emitted"])


class TimeWindower:
    """Windows of `size` seconds every `stride` seconds, aligned to multiples of the stride."""

    def __init__(self, size: float, stride: float) -> None:
        if not (size > 0 and stride > 0 and math.isfinite(size) and math.isfinite(stride)):
            raise ValueError(f"time windows need size > 0 and stride > 0 s, got {size}, {stride}")
        self.size, self.stride = float(size), float(stride)
        self._buffer: deque[Event] = deque()
        self._k0: int | None = None  # a_0 = k0 * stride
        self._next = 0  # the next window to emit is k = k0 + _next
        self._emitted = 0

    def _start(self, k: int) -> float:
        return k * self.stride

    def push(self, event: Event) -> list[Window]:
        if self._k0 is None:
            self._k0 = math.floor(event.t / self.stride)
        out: list[Window] = []
        while self._start(self._k0 + self._next) + self.size <= event.t:  # window closed
            a = self._start(self._k0 + self._next)
            events = [e for e in self._buffer if e.t < a + self.size]
            if events:
                out.append(make_window(self._emitted, a, a + self.size, events))
                self._emitted += 1
            self._next += 1
            next_start = self._start(self._k0 + self._next)
            while self._buffer and self._buffer[0].t < next_start:
                self._buffer.popleft()
            if not self._buffer:
                # Only this event is left: skip the empty windows up to the first holding it,
                # k > (t - size) / stride.
                first = math.floor((event.t - self.size) / self.stride) + 1 - self._k0
                self._next = max(self._next, first)
        if event.t >= self._start(self._k0 + self._next):  # else it falls in a gap (stride > size)
            self._buffer.append(event)
        return out

    def state(self) -> dict[str, Any]:
        return {
            "buffer": [e.to_json() for e in self._buffer],
            "k0": self._k0,
            "next": self._next,
            "emitted": self._emitted,
        }

    def load(self, state: dict[str, Any]) -> None:
        self._buffer = deque(Event.from_json(row) for row in state["buffer"])
        self._k0 = None if state["k0"] is None else int(state["k0"])
        self._next, self._emitted = int(state["next"]), int(state["emitted"])
