"""Server test fixtures: one engine for the whole session, a live uvicorn server on a free
loopback port, and in-process apps reached through httpx's ASGI transport."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from augury.server.app import create_app
from augury.server.config import ServerConfig
from augury.server.engine_client import EngineClient, LocalEngineClient

# Re-exported for the server tests (the helper itself is shared with other suites).
from tests.live_server import LiveServer as LiveServer
from tests.live_server import free_port as free_port
from tests.live_server import start_server as start_server

KEY = "sk-test-key-0123456789"
"""The API key of the live server (named 'tester')."""


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def engine(local_engine: LocalEngineClient) -> LocalEngineClient:
    return local_engine


@pytest.fixture(scope="session")
def live(engine: LocalEngineClient) -> Iterator[LiveServer]:
    """The real server (auth on) for the OpenAI SDK, disconnect and TLS-free HTTP tests."""
    app = create_app(ServerConfig(api_keys={"tester": KEY}), engines=[engine])
    server = start_server(app)
    yield server
    server.stop()


AppFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def make_client(engine: LocalEngineClient) -> AsyncIterator[AppFactory]:
    """Build an in-process app (ServerConfig fields as keyword arguments) and a client for it."""
    clients: list[httpx.AsyncClient] = []

    def make(engines: list[EngineClient] | None = None, **config: Any) -> httpx.AsyncClient:
        app = create_app(ServerConfig(**config), engines=engines or [engine])
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60
        )
        client.app = app  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def wait_idle(engine: EngineClient, timeout: float = 5.0) -> float:
    """Seconds until the engine runs nothing and holds no cache blocks; fails after `timeout`."""
    start = time.monotonic()
    while True:
        stats = engine.stats()
        if stats.running == 0 and stats.waiting == 0 and stats.kv_blocks_used == 0:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"engine still busy after {timeout} s: {stats}")
        time.sleep(0.01)


def chat_body(engine: EngineClient, content: str = "What is 2+2?", **fields: Any) -> dict[str, Any]:
    """A small greedy chat request."""
    body: dict[str, Any] = {
        "model": engine.model_id,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 4,
        "temperature": 0,
    }
    body.update(fields)
    return body
