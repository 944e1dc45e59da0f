"""Server test fixtures: one engine for the whole session, a live uvicorn server on a free
loopback port, and in-process apps reached through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from fastapi import FastAPI

from augury.llm.engine import EngineConfig
from augury.server.app import create_app, server_state
from augury.server.config import ServerConfig
from augury.server.engine_client import EngineClient, LocalEngineClient, load_local_engine
from augury.server.state import ServerState

KEY = "sk-test-key-0123456789"
"""The API key of the live server (named 'tester')."""


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def engine() -> Iterator[LocalEngineClient]:
    torch.set_num_threads(1)
    config = EngineConfig(dtype="float32", kv_cache_memory=64 << 20, num_threads=1)
    client = load_local_engine(config)
    yield client
    asyncio.run(client.shutdown())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def state(self) -> ServerState:
        return server_state(self.app)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def start_server(app: FastAPI, scheme: str = "http", **uvicorn_options: Any) -> LiveServer:
    """uvicorn in a background thread; returns once it accepts connections."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, **uvicorn_options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return LiveServer(f"{scheme}://127.0.0.1:{port}", app, server, thread)


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
