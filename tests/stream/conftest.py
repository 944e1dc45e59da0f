"""Stream test fixtures: an app with only the stream route (no LLM loaded) under a live
uvicorn server on a free loopback port, with helpers to build events."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from augury.server.app import create_app
from augury.server.config import ServerConfig
from augury.server.streams import StreamRouter
from augury.server.websocket import DirectWebSocketProtocol
from augury.stream.config import StreamConfig
from tests.live_server import start_server

KEY = "sk-stream-test-0123456789"
OTHER_KEY = "sk-stream-other-0123456789"
KEYS = {"tester": KEY, "other": OTHER_KEY}


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def build_app(config: StreamConfig | None = None) -> tuple[FastAPI, StreamRouter]:
    """The server's app (no engines, auth on) with the stream router mounted."""
    server_config = ServerConfig(api_keys=KEYS, streams=config or StreamConfig())
    app = create_app(server_config, engines=[])
    router: StreamRouter = app.state.streams
    return app, router


@dataclass
class Live:
    url: str
    router: StreamRouter
    server: uvicorn.Server
    thread: threading.Thread
    protocol: str
    """A key of PROTOCOLS."""

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


PROTOCOLS = {"direct": DirectWebSocketProtocol, "asgi": "websockets-sansio"}
"""uvicorn WebSocket protocols: `augury serve`'s, whose direct path takes event frames and
writes results without ASGI hops, and uvicorn's own (plain ASGI, as under other servers)."""


def start(config: StreamConfig | None = None, protocol: str = "direct") -> Live:
    app, router = build_app(config)
    server = start_server(app, scheme="ws", ws=PROTOCOLS[protocol])
    return Live(f"{server.url}/v1/streams", router, server.server, server.thread, protocol)


@pytest.fixture(scope="module", params=list(PROTOCOLS))
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    """A server per protocol: every test that uses it runs over both paths."""
    server = start(StreamConfig(resume_timeout_s=30, idle_timeout_s=30), request.param)
    yield server
    server.stop()


def events(
    n: int, start: int = 0, dt: float = 0.01, channels: tuple[str, ...] = ("x",)
) -> list[dict[str, Any]]:
    """n events at times start*dt, (start+1)*dt, ... with value = index per channel."""
    return [
        {"t": (start + i) * dt, "values": {c: float(start + i) for c in channels}} for i in range(n)
    ]
