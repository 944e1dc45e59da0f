"""augury.server.web.activity: rates from polled counters, batch rows, and the live and
resumable sessions of a real StreamManager, on a fixed clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from augury.server.web.activity import RateSampler, StreamActivity, job_item, job_items
from augury.stream.config import StreamConfig
from augury.stream.manager import StreamManager
from augury.stream.protocol import OpenFrame
from augury.stream.session import Session
from augury.stream.windows import Event

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- RateSampler -------------------------------------------------------------------------------


def test_rates_need_two_samples_then_difference_them() -> None:
    sampler = RateSampler(window_s=10)
    assert sampler.rates("a", [100, 5], now=1000.0) == [None, None]
    assert sampler.rates("a", [130, 5], now=1002.0) == [15.0, 0.0]
    assert sampler.rates("a", [160, 9], now=1004.0) == [15.0, 1.0]  # base still at t=1000


def test_rates_cover_the_window_and_no_more() -> None:
    sampler = RateSampler(window_s=4)
    for t, v in [(0.0, 0), (2.0, 100), (4.0, 200), (6.0, 210), (8.0, 220)]:
        rate = sampler.rates("a", [v], now=t)
    # The base is the newest sample at least 4 s old (t=4): (220 - 200) / 4.
    assert rate == [5.0]


def test_a_counter_going_down_reads_as_zero_and_keys_are_forgotten() -> None:
    sampler = RateSampler()
    sampler.rates("a", [50], now=0.0)
    assert sampler.rates("a", [10], now=1.0) == [0.0]
    sampler.rates("b", [1], now=1.0)
    sampler.keep_only(["b"])
    assert len(sampler) == 1
    assert sampler.rates("a", [20], now=2.0) == [None]  # a fresh start


def test_a_bad_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_s must be > 0"):
        RateSampler(window_s=0)


# -- batch rows --------------------------------------------------------------------------------


def batch(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "batch_1", "status": "in_progress", "endpoint": "/v1/chat/completions",
        "created_at": 1000, "in_progress_at": 1010, "completed_at": None, "failed_at": None,
        "cancelled_at": None, "expired_at": None, "errors": None,
        "request_counts": {"total": 100, "completed": 30, "failed": 10},
    }  # fmt: skip
    return {**body, **fields}


def test_a_running_batch_shows_its_share_done_and_rate_so_far() -> None:
    item = job_item(batch(), now=1020.0)
    assert item.progress == pytest.approx(0.4)
    assert item.rows_per_s == pytest.approx(40 / 10)
    assert item.finished_at is None and item.in_progress_at == 1010
    later = batch(request_counts={"total": 100, "completed": 70, "failed": 10})
    assert job_item(later, now=1030.0).rows_per_s == pytest.approx(80 / 20)


def test_a_finished_batch_shows_its_average_rate() -> None:
    done = batch(
        status="completed", completed_at=1050,
        request_counts={"total": 100, "completed": 98, "failed": 2},
    )  # fmt: skip
    item = job_item(done, now=2000.0)
    assert item.progress == 1.0 and item.finished_at == 1050
    assert item.rows_per_s == pytest.approx(100 / 40)


def test_a_queued_batch_has_no_progress_or_rate_yet() -> None:
    queued = batch(
        status="validating", in_progress_at=None,
        request_counts={"total": 0, "completed": 0, "failed": 0},
    )  # fmt: skip
    item = job_item(queued, now=1001.0)
    assert item.progress is None and item.rows_per_s is None and item.error is None


def test_a_batch_that_failed_validation_has_no_progress_and_says_why() -> None:
    errors = {"object": "list", "data": [{"code": "invalid_request", "message": "line 3 is bad"}]}
    failed = batch(
        status="failed", in_progress_at=None, failed_at=1001, errors=errors,
        request_counts={"total": 0, "completed": 0, "failed": 0},
    )  # fmt: skip
    item = job_item(failed, now=2000.0)
    assert item.progress is None and item.rows_per_s is None
    assert item.error == "line 3 is bad" and item.finished_at == 1001


def test_job_items_keeps_the_newest() -> None:
    batches = [batch(id="b3"), batch(id="b2"), batch(id="b1")]
    assert [i.id for i in job_items(batches, limit=2, now=1020.0)] == ["b3", "b2"]


# -- streaming sessions ------------------------------------------------------------------------


def open_session(manager: StreamManager) -> tuple[Session, list[str]]:
    frame = OpenFrame.model_validate({
        "type": "open", "model": "zscore", "channels": ["x"],
        "window": {"kind": "count", "size": 10, "stride": 10},
    })  # fmt: skip
    session, _ = manager.open(frame, "tester")
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    session.attach(send)
    return session, sent


async def feed(session: Session, first: int, n: int) -> None:
    target = session.core.counters.windows + n // 10
    await session.put([Event(i, i * 0.01, np.array([float(i)])) for i in range(first, first + n)])
    async with asyncio.timeout(5):
        while session.core.counters.windows < target:
            await asyncio.sleep(0.01)


async def test_live_sessions_with_rates_then_resumable_after_a_detach(tmp_path: Path) -> None:
    config = StreamConfig(checkpoint_dir=tmp_path, resume_timeout_s=30)
    manager = StreamManager(config)
    activity = StreamActivity(window_s=10)
    session, sent = open_session(manager)
    await feed(session, 0, 20)
    (item,) = activity.items(manager, now=100.0)
    assert (item.id, item.state, item.model, item.key_name) == (
        session.id,
        "live",
        "zscore",
        "tester",
    )
    assert (item.events_in, item.results_out, item.channels) == (20, 2, ["x"])
    assert item.events_per_s is None  # one sample so far
    await feed(session, 20, 30)
    (item,) = activity.items(manager, now=102.0)
    assert item.events_per_s == pytest.approx(30 / 2)
    assert item.results_per_s == pytest.approx(3 / 2)
    assert len(sent) == 5  # one result per 10 events went to the client

    await manager.detach(session)
    (item,) = activity.items(manager, now=103.0)
    assert (item.state, item.events_in, item.results_out) == ("resumable", 50, 5)
    assert item.events_per_s == 0.0 and item.resumable_until is not None
    checkpoint = manager.store.get(session.id)
    assert checkpoint is not None
    assert item.resumable_until == pytest.approx(checkpoint.saved_at + 30)

    # A restarted server finds the checkpoint in its folder; a fresh dashboard lists it.
    restarted = StreamManager(config)
    (item,) = StreamActivity().items(restarted)
    assert (item.id, item.state, item.events_in) == (session.id, "resumable", 50)
    restarted.store.remove(session.id)
    assert activity.items(restarted) == []


async def test_closed_sessions_leave_the_list() -> None:
    manager = StreamManager(StreamConfig())
    activity = StreamActivity()
    session, _ = open_session(manager)
    await feed(session, 0, 10)
    assert len(activity.items(manager)) == 1
    await manager.close(session)
    assert activity.items(manager) == []


async def test_the_list_stops_at_the_limit_live_sessions_first() -> None:
    manager = StreamManager(StreamConfig())
    activity = StreamActivity()
    sessions = [open_session(manager)[0] for _ in range(3)]
    for session in sessions:
        await feed(session, 0, 10)
    assert len(activity.items(manager)) == 3
    await manager.detach(sessions[0])
    shown = activity.items(manager, limit=2)
    assert [(i.id, i.state) for i in shown] == [(s.id, "live") for s in sessions[1:]]
    # The resumable one was not shown but is still known: it comes back with room.
    (resumable,) = [i for i in activity.items(manager, limit=3) if i.state == "resumable"]
    assert resumable.id == sessions[0].id
    for session in sessions[1:]:
        await manager.close(session)
