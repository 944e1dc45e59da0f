"""One task turns every session's queued events into results: schedule() -> execute() ->
update().

Readers queue events and `notify` the scheduler; each step then takes the queued events of
all notified sessions at once, so the features of every window closed in that step are
computed in a few vectorized numpy calls (one `extract_batch` per window shape), however many
sessions the windows come from. The more load, the larger the steps and the cheaper each
window: the server catches up instead of queueing. Models then score each session's windows
in order, and the result frames go to the sessions' outboxes, which their sender tasks write
to the sockets. A session whose client is behind on reading (a full outbox) is skipped until
its sender catches up, so its queue fills and its overflow policy applies.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from augury.stream.features import extract_windows
from augury.stream.session import Session
from augury.stream.windows import F64, Event, Window
from augury.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass
class Work:
    """One session's share of a step."""

    session: Session
    events: list[Event]
    windows: list[Window]


class Scheduler:
    """See the module docstring. Lives on the event loop of the sessions it serves."""

    def __init__(self) -> None:
        self._ready: dict[Session, None] = {}  # sessions with queued events, in notify order
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.steps = 0
        """Steps run so far (each covers every notified session)."""

    def notify(self, session: Session) -> None:
        """`session` has queued events: score them in the next step."""
        self._ready[session] = None
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            # (a new event loop, e.g. a test client's, gets its own task)
            self._wake = None
            self._task = loop.create_task(self._run(), name="stream-scheduler")
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def stop(self) -> None:
        """Cancel the task (server shutdown; sessions score their leftovers on detach)."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._ready:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
            try:
                self.step()
            except Exception:  # a bug must not stall every session
                log.exception("stream scheduler step failed")
            await asyncio.sleep(0)  # read the sockets between steps

    def step(self) -> None:
        work = self.schedule()
        features = self.execute(work)
        self.update(work, features)
        self.steps += 1

    def schedule(self) -> list[Work]:
        """Take up to `worker_batch` events of every ready session whose client keeps up;
        sessions with events left stay ready."""
        work: list[Work] = []
        for session in list(self._ready):
            if session.backlogged:  # its sender notifies again once it has caught up
                del self._ready[session]
                continue
            events = session.queue.take(session.worker_batch)
            if not len(session.queue):
                del self._ready[session]
            if events:
                work.append(Work(session, events, []))
        return work

    def execute(self, work: list[Work]) -> list[list[F64]]:
        """Window every session's events, then the features of all windows at once."""
        for item in work:
            item.windows = item.session.core.windows(item.events)
        spec = [
            (w.windows, w.session.core.spec.features, w.session.core.spec.n_bands) for w in work
        ]
        return extract_windows(spec)

    def update(self, work: list[Work], features: list[list[F64]]) -> None:
        """Score the windows session by session and hand the results to the senders."""
        for item, rows in zip(work, features, strict=True):
            try:
                texts = item.session.core.results(item.windows, rows)
            except Exception:
                log.exception("stream session %s failed to score a window", item.session.id)
                texts = []
            item.session.deliver(texts)
