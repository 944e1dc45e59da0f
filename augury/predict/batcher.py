"""Dynamic batching: requests for one model wait in a bounded queue and are merged into one
runtime call.

A worker takes the oldest request, then waits for batch-mates until the batch holds
`max_batch_size` rows, reaches a preferred size, or the oldest request has waited
`max_queue_delay_ms`. With a delay of 0 it takes whatever is queued at that moment, so
batches still form while the runtime is busy and a lone request never waits. `execute` runs
in a thread (the event loop keeps parsing requests meanwhile) and returns one result or
exception per request, in order: a malformed request fails alone, never its batch-mates.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from augury.predict.config import BatchingConfig
from augury.predict.errors import ModelNotReady, QueueFull, RequestTimeout

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

Execute = Callable[[Sequence[ItemT]], Sequence[ResultT | Exception]]


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    rows: int
    future: asyncio.Future[ResultT]
    enqueued: float


@dataclass
class BatcherStats:
    """Counters since start (read by metrics and tests)."""

    calls: int = 0
    """Runtime calls made."""
    requests: int = 0
    """Requests answered by those calls."""
    rows: int = 0
    """Rows in those calls."""
    batch_sizes: list[int] = field(default_factory=list)
    """Requests per call, the last 1,000 calls."""


class DynamicBatcher(Generic[ItemT, ResultT]):
    """Queue requests for one model and run them in merged batches (see the module doc)."""

    def __init__(
        self, execute: Execute[ItemT, ResultT], config: BatchingConfig, name: str = "model"
    ) -> None:
        self._execute = execute
        self.config = config
        self.name = name
        self.stats = BatcherStats()
        self._queue: deque[_Pending[ItemT, ResultT]] = deque()
        self._queued_rows = 0
        self._executor = ThreadPoolExecutor(config.instances, thread_name_prefix=f"predict-{name}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._closed = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, item: ItemT, rows: int = 1, timeout_s: float | None = None) -> ResultT:
        """The result of `item` (which holds `rows` rows), or its exception.

        Raises QueueFull when the queue is at its bound, RequestTimeout after `timeout_s`
        (default: the config's timeout_ms), ModelNotReady once the batcher is stopped.
        """
        if self._closed:
            raise ModelNotReady(f"model {self.name!r} is unloading; retry shortly")
        if len(self._queue) >= self.config.max_queue_size:
            raise QueueFull(
                f"model {self.name!r} has {len(self._queue)} requests queued (the limit); "
                "retry later or raise batching.max_queue_size"
            )
        self._ensure_started()
        loop = asyncio.get_running_loop()
        pending: _Pending[ItemT, ResultT] = _Pending(
            item, rows, loop.create_future(), time.perf_counter()
        )
        self._queue.append(pending)
        self._queued_rows += rows
        self._wakeup.set()
        timeout = self.config.timeout_ms / 1000 if timeout_s is None else timeout_s
        # One timer handle per request (asyncio.wait_for costs a task-like wrapper each).
        expiry = loop.call_later(timeout, self._expire, pending.future, timeout)
        try:
            return await pending.future
        finally:
            expiry.cancel()

    def _expire(self, future: asyncio.Future[ResultT], timeout: float) -> None:
        if not future.done():  # a queued request is then skipped; a running one dropped
            future.set_exception(
                RequestTimeout(
                    f"model {self.name!r} did not answer within {timeout:.3g} s; "
                    "the server is overloaded or the timeout too short"
                )
            )

    def run_now(self, items: Sequence[ItemT]) -> Sequence[ResultT | Exception]:
        """Run a batch synchronously, bypassing the queue (offline use and benchmarks)."""
        return self._execute(items)

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Refuse new requests, let queued and running ones finish, then stop the workers."""
        self._closed = True
        deadline = time.perf_counter() + drain_timeout_s
        while (self._queue or self._in_flight) and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        for task in self._workers:
            task.cancel()
        for p in self._queue:
            if not p.future.done():
                p.future.set_exception(ModelNotReady(f"model {self.name!r} was unloaded"))
        self._queue.clear()
        self._executor.shutdown(wait=False)

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._workers:
            return
        # First use, or a new event loop (tests): the event and workers belong to one loop.
        self._loop, self._wakeup = loop, asyncio.Event()
        self._workers = [loop.create_task(self._work()) for _ in range(self.config.instances)]

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = await self._collect()
            if batch:
                await self._run(batch)

    async def _collect(self) -> list[_Pending[ItemT, ResultT]]:
        """Wait for batch-mates of the oldest request, then take a batch off the queue."""
        cfg = self.config
        deadline = self._queue[0].enqueued + cfg.max_queue_delay_ms / 1000
        while self._queue:
            rows = self._queued_rows
            if rows >= cfg.max_batch_size or rows in cfg.preferred_batch_sizes:
                break
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Pending[ItemT, ResultT]] = []
        rows = 0
        while self._queue and (not batch or rows + self._queue[0].rows <= cfg.max_batch_size):
            p = self._queue.popleft()
            self._queued_rows -= p.rows
            if not p.future.done():  # timed out or cancelled while queued: skip
                batch.append(p)
                rows += p.rows
        return batch

    async def _run(self, batch: list[_Pending[ItemT, ResultT]]) -> None:
        loop = asyncio.get_running_loop()
        items = [p.item for p in batch]
        self._in_flight += 1
        try:
            results = await loop.run_in_executor(self._executor, self._execute, items)
        except Exception as exc:  # execute itself failed: every request gets the error
            results = [exc] * len(batch)
        finally:
            self._in_flight -= 1
        s = self.stats
        s.calls += 1
        s.requests += len(batch)
        s.rows += sum(p.rows for p in batch)
        s.batch_sizes.append(len(batch))
        del s.batch_sizes[:-1000]
        for p, result in zip(batch, results, strict=True):
            if p.future.done():
                continue
            if isinstance(result, Exception):
                p.future.set_exception(result)
            else:
                p.future.set_result(result)
