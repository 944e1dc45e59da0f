"""The WebSocket connection's idle watchdog (augury/server/streams.py), with a fake socket:
an idle wait becomes TimeoutError, anybody else's cancellation stays a cancellation, and a
connection busy elsewhere (not waiting for a frame) is never cut."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from starlette.websockets import WebSocket

from augury.server.streams import Connection
from augury.stream.config import StreamConfig
from augury.stream.manager import StreamManager

pytestmark = pytest.mark.anyio

LIMIT = 0.05


class SilentSocket:
    """A client that never sends anything."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {"type": "websocket", "extensions": {}}

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def connection() -> Connection:
    manager = StreamManager(StreamConfig(idle_timeout_s=LIMIT))
    return Connection(cast(WebSocket, SilentSocket()), manager, "k")


async def receive_watched(conn: Connection) -> None:
    task = asyncio.current_task()
    assert task is not None
    conn._watch(task)
    await conn._receive()


async def test_idle_wait_times_out() -> None:
    conn = connection()
    task = asyncio.create_task(receive_watched(conn))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, 5)
    assert task.cancelling() == 0


async def test_an_outside_cancel_stays_a_cancel() -> None:
    conn = connection()
    task = asyncio.create_task(receive_watched(conn))
    await asyncio.sleep(LIMIT / 5)
    task.cancel()  # e.g. server shutdown
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_busy_elsewhere_is_never_cut() -> None:
    conn = connection()

    async def busy() -> str:
        task = asyncio.current_task()
        assert task is not None
        conn._watch(task)
        await asyncio.sleep(LIMIT * 4)  # e.g. blocked on a full input queue, not reading
        return "done"

    assert await busy() == "done"
    assert conn._watchdog is not None
    conn._watchdog.cancel()
