"""Dynamic batching: merged calls, order, per-request errors, bounded queue, timeouts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from augury.predict.batcher import DynamicBatcher
from augury.predict.config import BatchingConfig
from augury.predict.errors import QueueFull, RequestTimeout

pytestmark = pytest.mark.anyio


class Doubler:
    """Records each call; fails the requests that are negative."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.delay_s = delay_s
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.release.wait(5)
        self.calls.append(list(items))
        time.sleep(self.delay_s)
        return [ValueError(f"bad {x}") if x < 0 else 2 * x for x in items]


async def test_burst_of_64_becomes_a_handful_of_calls() -> None:
    fn = Doubler(delay_s=0.002)
    batcher = DynamicBatcher(fn, BatchingConfig(max_batch_size=32, max_queue_delay_ms=20))
    results = await asyncio.gather(*(batcher.submit(i) for i in range(64)))
    assert results == [2 * i for i in range(64)]
    assert len(fn.calls) <= 4
    assert batcher.stats.requests == 64
    await batcher.stop()


async def test_malformed_request_fails_alone() -> None:
    fn = Doubler()
    batcher = DynamicBatcher(fn, BatchingConfig(max_batch_size=8, max_queue_delay_ms=20))
    results = await asyncio.gather(
        *(batcher.submit(i) for i in (1, -1, 2, 3)), return_exceptions=True
    )
    assert results[0] == 2 and results[2] == 4 and results[3] == 6
    assert isinstance(results[1], ValueError)
    assert len(fn.calls) == 1
    await batcher.stop()


async def test_no_delay_runs_a_lone_request_at_once() -> None:
    fn = Doubler()
    batcher = DynamicBatcher(fn, BatchingConfig(max_batch_size=8, max_queue_delay_ms=0))
    start = time.perf_counter()
    assert await batcher.submit(5) == 10
    assert time.perf_counter() - start < 0.5
    await batcher.stop()


async def test_batching_off_runs_each_request_alone() -> None:
    fn = Doubler()
    batcher = DynamicBatcher(fn, BatchingConfig(max_batch_size=1))
    await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert all(len(c) == 1 for c in fn.calls) and len(fn.calls) == 10
    await batcher.stop()


async def test_full_queue_refuses_and_slow_requests_time_out() -> None:
    fn = Doubler()
    fn.release.clear()  # the runtime is stuck until released
    batcher = DynamicBatcher(fn, BatchingConfig(max_batch_size=1, max_queue_size=2))
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.05)  # taken by the worker, blocked in the runtime
    queued = [asyncio.ensure_future(batcher.submit(i, timeout_s=0.2)) for i in (2, 3)]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull, match="limit"):
        await batcher.submit(4)
    for task in queued:
        with pytest.raises(RequestTimeout):
            await task
    fn.release.set()
    assert await first == 2
    assert await batcher.submit(5) == 10  # timed-out requests left the queue
    assert [c for c in fn.calls if 2 in c or 3 in c] == []
    await batcher.stop()
