"""Liveness, readiness while loading / after a failed load / while draining."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

import augury.server.app as app_module
from augury.llm.engine import EngineConfig
from augury.server.app import create_app, server_state
from augury.server.config import ServerConfig
from augury.server.engine_client import EngineClient
from tests.server.conftest import AppFactory
from tests.server.fakes import FakeEngine

pytestmark = pytest.mark.anyio


async def test_health_and_ready(make_client: AppFactory) -> None:
    client = make_client(engines=[FakeEngine()])
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).json() == {"status": "ready", "models": ["fake"]}
    server_state(client.app).draining = True  # type: ignore[attr-defined]
    r = await client.get("/ready")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 503
    assert (await client.get("/health")).status_code == 200


async def test_loading_then_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow_load(config: EngineConfig) -> EngineClient:
        release.wait(10)
        return FakeEngine()

    monkeypatch.setattr(app_module, "load_local_engine", slow_load)
    app = create_app(ServerConfig())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        r = await client.get("/ready")
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading"
        assert (await client.get("/v1/models")).status_code == 503
        release.set()
        for _ in range(200):
            if (await client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert (await client.get("/v1/models")).json()["data"][0]["id"] == "fake"


async def test_failed_load_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(config: EngineConfig) -> EngineClient:
        raise FileNotFoundError("no such model file: /m.gguf")

    monkeypatch.setattr(app_module, "load_local_engine", broken)
    app = create_app(ServerConfig())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        for _ in range(200):
            r = await client.get("/ready")
            if r.json()["error"]["code"] != "model_loading":
                break
            await asyncio.sleep(0.01)
        assert r.status_code == 503 and "/m.gguf" in r.json()["error"]["message"]
