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
from typing import cast

import numpy as np

from augury.stream.features import extract_windows
from augury.stream.models import ModelOutput, ZScoreDetector
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
        """Score the windows (z-score detectors of every session at once, other models
        session by session) and hand the results to the senders."""
        try:
            outputs, failed = score_zscore(work, features), False
        except Exception:  # a bug must not stall every session
            log.exception("stream scheduler: batched z-score scoring failed")
            outputs, failed = {}, True
        for i, (item, rows) in enumerate(zip(work, features, strict=True)):
            texts: list[str] = []
            # After a failed batch a detector may be half updated: no results from it this step.
            if not (failed and isinstance(item.session.core.model, ZScoreDetector)):
                try:
                    texts = item.session.core.results(item.windows, rows, outputs.get(i))
                except Exception:
                    log.exception("stream session %s failed to score a window", item.session.id)
            item.session.deliver(texts)


def score_zscore(work: list[Work], features: list[list[F64]]) -> dict[int, list[ModelOutput]]:
    """The outputs of every z-score session's windows, by index into `work`: round r scores
    the r-th window of every session that has one, in one `ZScoreDetector.step_many` call per
    feature length, so each session still sees its windows in order."""
    todo = [
        i
        for i, item in enumerate(work)
        if isinstance(item.session.core.model, ZScoreDetector) and item.windows
    ]
    outputs: dict[int, list[ModelOutput]] = {i: [] for i in todo}
    r = 0
    while todo:
        groups: dict[int, list[int]] = {}
        for i in todo:
            groups.setdefault(len(features[i][r]), []).append(i)
        for members in groups.values():
            models = [cast(ZScoreDetector, work[i].session.core.model) for i in members]
            X = np.array([features[i][r] for i in members])
            for i, out in zip(members, ZScoreDetector.step_many(models, X), strict=True):
                outputs[i].append(out)
        r += 1
        todo = [i for i in todo if len(work[i].windows) > r]
    return outputs
