"""The scheduler and session shell in process: results equal a lone pipeline's, one step
serves many sessions, a backlogged client is skipped, and the queue's policies hold."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from augury.stream.backpressure import EventQueue
from augury.stream.config import StreamConfig
from augury.stream.manager import StreamManager
from augury.stream.protocol import OpenFrame
from augury.stream.session import Session
from augury.stream.windows import Event

pytestmark = pytest.mark.anyio

OPEN = {
    "type": "open",
    "model": "zscore",
    "channels": ["x", "y"],
    "window": {"kind": "count", "size": 8, "stride": 2},
    "options": {"model": {"warmup": 5}},
}


def stream(n: int, seed: int) -> list[Event]:
    rng = np.random.default_rng(seed)
    return [Event(i, i * 0.01, rng.normal(size=2)) for i in range(n)]


class Sink:
    """A client socket that collects frames."""

    def __init__(self) -> None:
        self.frames: list[dict[str, object]] = []

    async def __call__(self, text: str) -> None:
        self.frames.append(json.loads(text))


async def settle(manager: StreamManager, sessions: list[Session]) -> None:
    for _ in range(1000):
        if not any(len(s.queue) or s.outbox for s in sessions):
            break
        await asyncio.sleep(0)


async def test_many_sessions_share_steps_and_match_a_lone_pipeline() -> None:
    manager = StreamManager(StreamConfig())
    frame = OpenFrame.model_validate(OPEN)
    pairs = [manager.open(frame, "k") for _ in range(20)]
    sinks = [Sink() for _ in pairs]
    for (session, _), sink in zip(pairs, sinks, strict=True):
        session.attach(sink)
    streams = [stream(60, seed) for seed in range(20)]
    for i in range(0, 60, 3):  # every session sends 3 events, then the next round
        for (session, _), events in zip(pairs, streams, strict=True):
            await session.put(events[i : i + 3])
        await asyncio.sleep(0)
    await settle(manager, [s for s, _ in pairs])
    for seed, sink in enumerate(sinks):
        lone = manager._build(manager.spec_of(frame))  # the same pipeline, one event at a time
        expected = [json.loads(t) for e in stream(60, seed) for t in lone.process([e])]
        acked = [f.pop("acked_event_id") for f in sink.frames]  # the highest id queued then
        assert all(a >= f["window"]["last_id"] for a, f in zip(acked, sink.frames, strict=True))  # type: ignore[index]
        assert sink.frames == [
            {k: v for k, v in f.items() if k != "acked_event_id"} for f in expected
        ]
        assert len(expected) == 27
        assert any("score" in f for f in expected)
    assert manager.scheduler.steps < 30  # not one step per session and frame
    await manager.shutdown()


async def test_backlogged_client_is_skipped_and_drop_oldest_applies() -> None:
    manager = StreamManager(StreamConfig(worker_batch=4))
    options = {"queue_size": 8, "overflow": "drop_oldest"}
    frame = OpenFrame.model_validate({**OPEN, "options": options})
    session, _ = manager.open(frame, "k")
    stuck = asyncio.Event()

    async def never(text: str) -> None:
        await stuck.wait()  # a client that stopped reading

    session.attach(never)
    for i in range(0, 200, 10):
        await session.put(stream(200, 0)[i : i + 10])
        await asyncio.sleep(0)
    assert len(session.outbox) <= 4 + 4  # one step's results past the limit at most
    assert len(session.queue) <= 8 and session.queue.dropped > 150
    stuck.set()
    await settle(manager, [session])
    assert session.stats()["queue_dropped"] == session.queue.dropped
    await manager.close(session)


def test_queue_offer_block_and_drop_oldest() -> None:
    events = stream(10, 0)
    block = EventQueue(4, "block")
    assert block.offer(events) == 4 and len(block) == 4
    assert block.offer(events, 4) == 4  # full: nothing more
    assert [e.id for e in block.take(3)] == [0, 1, 2]
    assert block.offer(events, 4) == 7 and block.high_water == 4
    drop = EventQueue(4, "drop_oldest")
    assert drop.offer(events[:3]) == 3 and drop.offer(events, 3) == 10
    assert [e.id for e in drop.take_all()] == [6, 7, 8, 9] and drop.dropped == 6
    with pytest.raises(ValueError, match="overflow must be"):
        EventQueue(4, "spill")  # type: ignore[arg-type]


async def test_blocked_reader_waits_for_room() -> None:
    queue = EventQueue(2, "block")
    events = stream(5, 0)
    done = queue.offer(events)
    waiter = asyncio.create_task(queue.room())
    await asyncio.sleep(0)
    assert done == 2 and not waiter.done()
    queue.take(1)
    await asyncio.wait_for(waiter, 1)
    assert queue.offer(events, done) == 3


def test_a_new_event_loop_gets_its_own_scheduler_task() -> None:
    """A manager outliving its loop (a test client per test) keeps scoring in the next."""
    manager = StreamManager(StreamConfig())
    frame = OpenFrame.model_validate(OPEN)

    async def one_session() -> list[dict[str, object]]:
        session, _ = manager.open(frame, "k")
        sink = Sink()
        session.attach(sink)
        await session.put(stream(20, 1))
        await settle(manager, [session])
        await manager.close(session)
        return sink.frames

    frames = []
    for _ in range(2):  # closed without cancelling its tasks: the old task stays pending
        loop = asyncio.new_event_loop()
        frames.append(loop.run_until_complete(one_session()))
        loop.close()
    assert len(frames[0]) == len(frames[1]) == 7 and frames[0] == frames[1]
