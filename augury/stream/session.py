"""One streaming session: events in, one result per window out, state that survives reconnects.

SessionCore   the synchronous pipeline: dedup by id -> reorder -> window -> features ->
              model -> result frames (kept in a ring for replay); no I/O, checkpointable
Session       the async shell: a bounded input queue filled by the socket reader, an outbox
              of frames written by a sender task (results skip it when the server can write
              them at once: augury/server/websocket.py), attach/detach of sockets. The shared
              scheduler (scheduler.py) runs queued events through the cores of all sessions
              at once: `windows` for each, features for all windows together, `results`
              for each.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from augury.stream.backpressure import EventQueue, Overflow
from augury.stream.features import check_features, extract_windows, feature_names
from augury.stream.models import ModelOutput, StreamModel
from augury.stream.windows import (
    F64,
    CountWindower,
    Event,
    LatePolicy,
    ReorderBuffer,
    TimeWindower,
    Window,
)

log = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class SessionSpec:
    """What a session was opened with (all a checkpoint needs to rebuild the pipeline)."""

    model: str
    channels: tuple[str, ...]
    window_kind: str
    window_size: float
    window_stride: float
    late_policy: LatePolicy
    reorder_bound: float
    queue_size: int
    overflow: Overflow
    features: tuple[str, ...]
    n_bands: int
    include_ids: bool
    model_options: dict[str, Any]

    def __post_init__(self) -> None:
        check_features(self.features, self.n_bands)
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels lists one twice: {list(self.channels)}")
        if self.window_kind == "count" and not (
            float(self.window_size).is_integer() and float(self.window_stride).is_integer()
        ):
            raise ValueError(
                f"count windows need whole sizes and strides, got "
                f"{self.window_size}, {self.window_stride}"
            )

    @property
    def n_features(self) -> int:
        return len(feature_names(self.channels, self.features, self.n_bands))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionSpec:
        data = {**data, "channels": tuple(data["channels"]), "features": tuple(data["features"])}
        return cls(**data)


@dataclass
class Counters:
    """What the session reports in "stats" frames."""

    events_received: int = 0
    duplicates: int = 0
    """Events at or below the highest accepted id (resent after a resume): skipped."""
    reordered: int = 0
    late_dropped: int = 0
    queue_dropped: int = 0
    bad_frames: int = 0
    windows: int = 0
    labels: int = 0
    """Windows a model learned a label from."""
    results_lost: int = 0
    """Results a resuming client missed because they left the replay buffer."""


class SessionCore:
    """The synchronous pipeline of one session (see the module docstring)."""

    def __init__(self, spec: SessionSpec, model: StreamModel, result_buffer: int) -> None:
        self.spec = spec
        self.model = model
        self.reorder = ReorderBuffer(spec.late_policy, spec.reorder_bound)
        self.windower: CountWindower | TimeWindower = (
            CountWindower(int(spec.window_size), int(spec.window_stride))
            if spec.window_kind == "count"
            else TimeWindower(spec.window_size, spec.window_stride)
        )
        self.counters = Counters()
        self.last_event_id = -1
        """The highest event id accepted: the client resends from here on after a resume."""
        self.next_seq = 0
        self.ring: deque[str] = deque(maxlen=result_buffer)
        """The latest result frames (JSON), for replay."""

    def accept(self, events: list[Event]) -> list[Event]:
        """The events that are new (id above every accepted one); records the highest id."""
        fresh = []
        for event in events:
            if event.id <= self.last_event_id:
                self.counters.duplicates += 1
                continue
            self.last_event_id = event.id
            fresh.append(event)
        self.counters.events_received += len(fresh)
        return fresh

    def windows(self, events: list[Event]) -> list[Window]:
        """Reorder and window events; returns the windows they complete."""
        out: list[Window] = []
        for event in events:
            for ordered in self.reorder.push(event):
                out += self.windower.push(ordered)
        self.counters.reordered = self.reorder.reordered
        self.counters.late_dropped = self.reorder.dropped_late
        return out

    def results(
        self,
        windows: list[Window],
        features: list[F64],
        outputs: list[ModelOutput] | None = None,
    ) -> list[str]:
        """Score each window's feature vector (in order: the model learns as it goes), or take
        the model's `outputs` for them when the caller already ran it (the scheduler scores
        many sessions at once); returns the result frames (JSON), also kept in the ring for
        replay."""
        if outputs is None:
            return [self._result(w, x) for w, x in zip(windows, features, strict=True)]
        return [self._result(w, x, o) for w, x, o in zip(windows, features, outputs, strict=True)]

    def process(self, events: list[Event]) -> list[str]:
        """Run events through the whole pipeline; returns the new result frames (JSON)."""
        windows = self.windows(events)
        if not windows:
            return []
        (features,) = extract_windows([(windows, self.spec.features, self.spec.n_bands)])
        return self.results(windows, features)

    def _result(self, window: Window, x: F64, output: ModelOutput | None = None) -> str:
        error: str | None = None
        if output is None:
            try:
                output = self.model.step(x, window.label)
            except ValueError as exc:  # e.g. a label outside the declared classes
                output = ModelOutput()
                error = str(exc)
        self.counters.windows += 1
        self.counters.labels += int(output.learned and window.label is not None)
        span: dict[str, Any] = {
            "index": window.index,
            "start": window.start,
            "end": window.end,
            "first_t": float(window.times[0]),
            "last_t": float(window.times[-1]),
            "count": len(window.ids),
            "first_id": window.ids[0],
            "last_id": window.ids[-1],
        }
        if self.spec.include_ids:
            span["ids"] = window.ids
        frame = {
            "type": "result",
            "seq": self.next_seq,
            "window": span,
            **{k: v for k, v in vars(output).items() if v is not None},
            "acked_event_id": self.last_event_id,
        }
        if error is not None:
            frame["error"] = error
        self.next_seq += 1
        text = orjson.dumps(frame, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        self.ring.append(text)
        return text

    def replay(self, after_seq: int) -> list[str]:
        """Result frames with seq > after_seq still in the ring; counts the ones lost."""
        first_kept = self.next_seq - len(self.ring)
        self.counters.results_lost += max(0, first_kept - (after_seq + 1))
        return list(self.ring)[max(0, after_seq + 1 - first_kept) :]

    def state(self) -> dict[str, Any]:
        return {
            "reorder": self.reorder.state(),
            "windower": self.windower.state(),
            "model": self.model.state(),
            "counters": asdict(self.counters),
            "last_event_id": self.last_event_id,
            "next_seq": self.next_seq,
            "ring": list(self.ring),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.reorder.load(state["reorder"])
        self.windower.load(state["windower"])
        self.model.load(state["model"])
        self.counters = Counters(**state["counters"])
        self.last_event_id = int(state["last_event_id"])
        self.next_seq = int(state["next_seq"])
        self.ring.clear()
        self.ring.extend(state["ring"])


class Session:
    """A core with its input queue, its outbox of frames to send and a sender task; sockets
    attach and detach. The scheduler turns queued events into results (see scheduler.py)."""

    def __init__(
        self,
        session_id: str,
        key_name: str,
        core: SessionCore,
        worker_batch: int,
        notify: Callable[[Session], None] | None = None,
    ) -> None:
        self.id = session_id
        self.key_name = key_name
        self.core = core
        self.queue = EventQueue(core.spec.queue_size, core.spec.overflow)
        self.worker_batch = worker_batch
        """Events the scheduler takes from the queue per step (and results the outbox may
        hold before the scheduler waits for the client to read)."""
        self.outbox: deque[str] = deque()
        """Result frames waiting for the sender task."""
        self._notify = notify or _run_alone
        self._send: Send | None = None
        self._send_nowait: Callable[[str], bool] | None = None
        self._send_lock = asyncio.Lock()
        self._sender: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._reported_drops = 0

    def attach(self, send: Send, send_nowait: Callable[[str], bool] | None = None) -> None:
        """Start sending frames through `send` (and start the sender task). With
        `send_nowait` (write a frame now if the socket can take it, else False), results go
        out as soon as they are scored, without waking the sender task, while nothing waits
        in the outbox."""
        self._send = send
        self._send_nowait = send_nowait
        if self._sender is None:
            self._sender = asyncio.create_task(self._drain(), name=f"stream-{self.id}")

    @property
    def backlogged(self) -> bool:
        """Whether the client is behind on reading: the scheduler leaves the queue alone."""
        return len(self.outbox) >= self.worker_batch

    async def send(self, frame: dict[str, Any] | str) -> None:
        """Send a frame now, after the results already in the outbox, if a client is attached."""
        text = frame if isinstance(frame, str) else json.dumps(frame)
        async with self._send_lock:
            await self._flush()
            if self._send is not None:
                await self._send(text)

    async def put(self, events: list[Event]) -> None:
        """Queue the new ones of `events` (the reader calls this; it may wait: 'block')."""
        fresh = self.core.accept(events)
        done = 0
        while done < len(fresh):
            queued = self.queue.offer(fresh, done)
            if queued > done:
                self._notify(self)
            done = queued
            if done < len(fresh):
                await self.queue.room()

    def put_nowait(self, events: list[Event]) -> bool:
        """`put` without waiting: False, with nothing changed, when the queue blocks and has
        no room for all of `events` now (then `put` them)."""
        queue = self.queue
        if queue.overflow == "block" and len(queue) + len(events) > queue.capacity:
            return False
        fresh = self.core.accept(events)
        if fresh:
            queue.offer(fresh)
            self._notify(self)
        return True

    def deliver(self, texts: list[str]) -> None:
        """Hand result frames to the client (the scheduler calls this), with a "dropped"
        frame when the queue discarded events since the last report: written at once through
        `send_nowait` where the server offers it and nothing is waiting or being sent, else
        queued in the outbox for the sender task."""
        self.core.counters.queue_dropped = self.queue.dropped
        if self.queue.dropped > self._reported_drops:
            self._reported_drops = self.queue.dropped
            texts = [*texts, json.dumps({"type": "dropped", "count": self.queue.dropped})]
        send_now = self._send_nowait
        if send_now is not None and not self.outbox and not self._send_lock.locked():
            sent = 0  # frames go out in order: stop at the first the socket cannot take
            while sent < len(texts) and send_now(texts[sent]):
                sent += 1
            texts = texts[sent:]
        self.outbox.extend(texts)
        if self.outbox and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _flush(self) -> None:
        """Send the outbox in order (call under the send lock); a dead socket empties it:
        the ring keeps every result for replay."""
        while self.outbox:
            text = self.outbox.popleft()
            if self._send is None:
                self.outbox.clear()
                return
            try:
                await self._send(text)
            except Exception:
                self._send = self._send_nowait = None
                self.outbox.clear()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.outbox:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
            async with self._send_lock:
                await self._flush()
            if len(self.queue):  # the scheduler skipped this session while it was backlogged
                self._notify(self)

    async def detach(self) -> None:
        """Stop the sender and run what is still queued, so the core holds every accepted
        event's effect (results go to the ring only)."""
        self._send = self._send_nowait = None  # not under the lock: a send may hang
        if self._sender is not None:
            self._sender.cancel()
            try:
                await self._sender
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("stream session %s sender failed", self.id)
            self._sender = None
        self.outbox.clear()
        self.core.counters.queue_dropped = self.queue.dropped
        self.core.process(self.queue.take_all())

    def stats(self) -> dict[str, Any]:
        self.core.counters.queue_dropped = self.queue.dropped
        return {
            "type": "stats",
            **asdict(self.core.counters),
            "queued": len(self.queue),
            "queue_high_water": self.queue.high_water,
            "last_event_id": self.core.last_event_id,
            "next_seq": self.core.next_seq,
        }


def _run_alone(session: Session) -> None:
    """Without a scheduler: score the session's queue at once (tests, tools)."""
    while len(session.queue):
        session.deliver(session.core.process(session.queue.take(session.worker_batch)))
