"""/v1/streams over a real uvicorn server: auth, exact results, bad frames, resume without loss
or duplicates, 100 concurrent sessions, backpressure and limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from augury.server.streams import Connection
from augury.stream.client import StreamClient, StreamError
from augury.stream.config import StreamConfig
from augury.stream.protocol import encode_binary

from .conftest import KEY, OTHER_KEY, Live, events, start

pytestmark = pytest.mark.anyio

TUMBLING = {"kind": "count", "size": 10, "stride": 10}


def client(live: Live, key: str = KEY, **kwargs: Any) -> StreamClient:
    kwargs.setdefault("window", TUMBLING)
    return StreamClient(
        live.url,
        kwargs.pop("model", "zscore"),
        kwargs.pop("channels", ["x"]),
        api_key=key,
        **kwargs,
    )


async def results(c: StreamClient, n: int, timeout: float = 20) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            frame = await c.recv()
            if frame["type"] == "result":
                out.append(frame)
    return out


async def next_of(c: StreamClient, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            frame = await c.recv()
            if frame["type"] == kind:
                return frame


@pytest.fixture(scope="module", params=["direct", "asgi"])
def limited(request: pytest.FixtureRequest) -> Iterator[Live]:
    config = StreamConfig(max_sessions_per_key=3, idle_timeout_s=1.0, max_frame_bytes=4096)
    server = start(config, request.param)
    yield server
    server.stop()


async def test_handshake_needs_a_valid_key(live: Live) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-wrong-key-000000"}):
        with pytest.raises(InvalidStatus) as info:
            async with connect(live.url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
        assert b"invalid_api_key" in info.value.response.body
    async with connect(f"{live.url}?api_key={OTHER_KEY}") as ws:
        await ws.send(json.dumps({"type": "open", "model": "zscore", "channels": ["x"]}))
        assert json.loads(await ws.recv())["type"] == "opened"


async def test_count_windows_exact_over_the_wire(live: Live) -> None:
    async with client(live, window={"kind": "count", "size": 10, "stride": 5}) as c:
        await c.send(events(50))
        got = await results(c, 9)
        assert [r["window"]["ids"] for r in got] == [
            list(range(5 * k, 5 * k + 10)) for k in range(9)
        ]
        assert [r["seq"] for r in got] == list(range(9))
        assert got[0]["window"]["first_t"] == 0.0 and got[0]["window"]["last_t"] == 0.09
        assert "score" not in got[0]  # zscore warms up first
        stats = await c.close()
    assert stats is not None and stats["events_received"] == 50 and stats["windows"] == 9


async def test_time_windows_with_reordering(live: Live) -> None:
    options = {"late_policy": "reorder", "reorder_bound": 0.3}
    async with client(
        live, window={"kind": "time", "size": 1.0, "stride": 0.5}, options=options
    ) as c:
        batch = events(40, dt=0.125)  # t = 0 .. 4.875
        batch[5], batch[6] = batch[6], batch[5]  # out of order, within the bound
        late = {"t": 0.1, "values": {"x": -1.0}}
        await c.send(batch[:20])
        await c.send([late, *batch[20:]])
        got = await results(c, 6)  # windows [0, 1) .. [2.5, 3.5): 4.875 - 0.3 >= 3.5
        assert [(r["window"]["start"], r["window"]["count"]) for r in got] == [
            (0.5 * k, 8) for k in range(6)
        ]
        stats = await c.stats()
        assert (stats["reordered"], stats["late_dropped"]) == (1, 1)


async def test_bad_frames_get_errors_and_the_session_goes_on(live: Live) -> None:
    async with client(live, channels=["x", "y"]) as c:
        bad = [
            ("{oops", "invalid_json"),
            ('{"type": "event", "t": 1, "values": {"x": 1, "y": 2}, "extra": 1}', "unknown_field"),
            ('{"type": "event", "t": NaN, "values": {"x": 1, "y": 2}}', "non_finite"),
            ('{"type": "event", "t": 1, "values": {"x": 1, "z": 2}}', "unknown_field"),
            ('{"type": "event", "t": 1, "values": {"x": 1}}', "missing_field"),
            ('{"type": "open", "model": "zscore", "channels": ["x"]}', "already_open"),
        ]
        for text, code in bad:
            await c.send_raw(text)
            error = await next_of(c, "error")
            assert error["code"] == code and not error["fatal"], error
        await c.send_raw(encode_binary(0, 0.0, np.zeros((2, 3), np.float32))[:-2])
        assert (await next_of(c, "error"))["code"] == "wrong_length"
        rows = np.column_stack([np.arange(10) * 0.01, np.ones(10), np.ones(10)])
        await c.send_binary(0.0, rows)
        (result,) = await results(c, 1)
        assert result["window"]["ids"] == list(range(10))
        assert (await c.stats())["bad_frames"] == 7


async def test_frame_size_and_idle_limits(limited: Live) -> None:
    async with client(limited) as c:
        await c.send_raw(json.dumps({"type": "batch", "events": events(200)}))
        error = await next_of(c, "error")
        assert error["code"] == "frame_too_large" and "4096" in error["message"]
        error = await next_of(c, "error")  # then nothing for 1 s
        assert error["code"] == "idle_timeout" and error["fatal"]


async def test_sessions_per_key_limit() -> None:
    limited = start(StreamConfig(max_sessions_per_key=3))
    try:
        clients = [client(limited) for _ in range(3)]
        await clients[0].open()
        assert clients[0].ws is not None
        await clients[0].ws.close()  # a resumable session still counts
        for c in clients[1:]:
            await c.open()
        with pytest.raises(StreamError, match="too_many_sessions"):
            await client(limited).open()
        await client(limited, key=OTHER_KEY).open()  # other keys are not affected
        await clients[0].resume()
        for c in clients:
            await c.close()
        await client(limited).open()
    finally:
        limited.stop()


async def test_no_event_lost_or_duplicated_across_forced_disconnects(live: Live) -> None:
    c = client(live)
    await c.open()
    seen: list[dict[str, Any]] = []
    n = 2000
    for part in range(4):
        for s0 in range(part * 500, part * 500 + 500, 50):
            await c.send(events(50, start=s0))
        seen += await results(c, 7)  # read a little, then cut the connection abruptly
        assert c.ws is not None
        c.ws.transport.abort()
        with pytest.raises(ConnectionClosed):
            while True:  # what already arrived still counts as received
                frame = await c.recv()
                seen += [frame] if frame["type"] == "result" else []
        await c.resume()
    seen += await results(c, n // 10 - len(seen))
    seqs = [r["seq"] for r in seen]
    assert seqs == list(range(n // 10)), "every result exactly once, in order"
    ids = [i for r in seen for i in r["window"]["ids"]]
    assert ids == list(range(n)), "every event in exactly one tumbling window"
    final = await c.close()
    assert final is not None and final["events_received"] == n and final["windows"] == n // 10
    assert final["last_event_id"] == n - 1 and final["results_lost"] == 0


async def test_resume_needs_the_token_and_the_key(live: Live) -> None:
    c = client(live)
    await c.open()
    assert c.ws is not None
    await c.ws.close()
    thief = client(live, key=OTHER_KEY)
    thief.session_id, thief.resume_token = c.session_id, c.resume_token
    with pytest.raises(StreamError, match="unknown_session"):
        await thief.resume()
    c.resume_token, token = "wrong-token", c.resume_token
    with pytest.raises(StreamError, match="unknown_session"):
        await c.resume()
    c.resume_token = token
    assert (await c.resume())["resumed"] is True
    await c.close()
    with pytest.raises(StreamError, match="unknown_session"):
        await c.resume()


async def test_hundred_concurrent_sessions(live: Live) -> None:
    async def one(i: int) -> list[list[int]]:
        async with client(live, channels=["a", "b"], options={"include_ids": True}) as c:
            for s0 in range(0, 200, 20):
                await c.send(events(20, start=s0, channels=("a", "b")))
            got = await results(c, 20, timeout=60)
            await c.close()
            return [r["window"]["ids"] for r in got]

    before = live.router.manager.count()
    everything = await asyncio.gather(*(one(i) for i in range(100)))
    expected = [list(range(10 * k, 10 * k + 10)) for k in range(20)]
    assert all(ids == expected for ids in everything)
    assert live.router.manager.count() == before  # closed sessions leave nothing behind


async def test_slow_consumer_drop_oldest_stays_bounded(live: Live) -> None:
    options = {"overflow": "drop_oldest", "queue_size": 16}
    async with client(
        live, window={"kind": "count", "size": 64, "stride": 1}, options=options
    ) as c:
        for s0 in range(0, 30_000, 1000):  # results pile up unread: the server's sends stall
            await c.send(events(1000, start=s0))
        await asyncio.sleep(0.5)
        assert c.ws is not None
        stats = None
        async with asyncio.timeout(60):
            await c.send_raw(json.dumps({"type": "stats"}))
            dropped = None
            while stats is None:
                frame = await c.recv()
                if frame["type"] == "dropped":
                    dropped = frame["count"]
                elif frame["type"] == "stats":
                    stats = frame
        assert stats["queue_dropped"] > 0 and dropped is not None
        assert stats["queue_high_water"] <= 16
        assert stats["windows"] + 63 + stats["queue_dropped"] >= 30_000 - 16


async def test_slow_consumer_block_loses_nothing(live: Live) -> None:
    options = {"overflow": "block", "queue_size": 16}
    async with client(
        live, window={"kind": "count", "size": 64, "stride": 1}, options=options
    ) as c:

        async def send_all() -> None:
            for s0 in range(0, 10_000, 1000):
                await c.send(events(1000, start=s0))

        sender = asyncio.create_task(send_all())
        await asyncio.sleep(1.0)  # not reading: the sender must be held back, not the memory
        got = await results(c, 10_000 - 63, timeout=60)
        await sender
        stats = await c.stats()
        assert [r["window"]["first_id"] for r in got] == list(range(10_000 - 63))
        assert stats["queue_dropped"] == 0 and stats["queue_high_water"] <= 16


async def test_frames_keep_their_order_across_both_paths(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Event frames go the direct path where the server offers one; a bad frame or a stats
    frame goes through ASGI; the server takes frames in the order they were sent."""
    taken = []
    take = Connection._take

    def counting(self: Connection, session: Any, payload: str | bytes) -> bool:
        ok = take(self, session, payload)
        taken.append(ok)
        return ok

    monkeypatch.setattr(Connection, "_take", counting)
    async with client(live, window={"kind": "count", "size": 1, "stride": 1}) as c:
        for k in range(3):
            for e in events(20, start=20 * k):
                await c.send([e])
            await c.send_raw("{oops" if k == 0 else json.dumps({"type": "stats"}))
        frames = []
        async with asyncio.timeout(20):
            while len(frames) < 63:
                frames.append(await c.recv())
    kinds = [f["type"] for f in frames]
    assert (kinds.count("result"), kinds.count("error"), kinds.count("stats")) == (60, 1, 2)
    ids = [f["window"]["first_id"] for f in frames if f["type"] == "result"]
    assert ids == list(range(60))
    # each stats frame was answered after every event sent before it was taken, none after
    assert [f["events_received"] for f in frames if f["type"] == "stats"] == [40, 60]
    if live.protocol == "direct":  # frames that came while ASGI had some went through ASGI
        assert taken.count(True) > 0 and taken.count(False) <= 3
    else:
        assert taken == []


async def test_block_with_one_event_per_frame_loses_nothing(live: Live) -> None:
    """Small frames into a full queue: the direct path hands them back and the reader waits."""
    options = {"overflow": "block", "queue_size": 8}
    async with client(live, window={"kind": "count", "size": 4, "stride": 1}, options=options) as c:

        async def send_all() -> None:
            for e in events(3000):
                await c.send([e])

        sender = asyncio.create_task(send_all())
        await asyncio.sleep(0.5)  # not reading yet
        got = await results(c, 3000 - 3, timeout=60)
        await sender
        stats = await c.stats()
    assert [r["window"]["first_id"] for r in got] == list(range(3000 - 3))
    assert stats["queue_dropped"] == 0 and stats["queue_high_water"] <= 8


async def test_events_keep_a_session_from_going_idle(limited: Live) -> None:
    async with client(limited) as c:
        for e in events(8):  # one every 0.3 s for 2.4 s, with an idle limit of 1 s
            await c.send([e])
            await asyncio.sleep(0.3)
        assert (await c.stats())["events_received"] == 8
        error = await next_of(c, "error")  # then nothing for 1 s
        assert error["code"] == "idle_timeout" and error["fatal"]
