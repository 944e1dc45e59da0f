"""Client disconnects, cancellation and timeouts: the engine stops and frees the cache."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from augury.server.engine_client import LocalEngineClient
from augury.server.streaming import merge
from tests.server.conftest import KEY, AppFactory, LiveServer, chat_body, wait_idle

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": f"Bearer {KEY}"}
LONG = 400  # tokens: far more than the test waits for


def wait_busy(engine: LocalEngineClient, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.stats().running == 0:
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.005)


def assert_freed_soon(engine: LocalEngineClient, steps_at_drop: int) -> None:
    """The request is gone and its blocks are free a few steps after the client left (the
    engine frees them before its next step once the abort arrives; noticing the closed socket
    can take a step or two)."""
    wait_idle(engine, timeout=2.0)
    assert engine.stats().steps_total - steps_at_drop <= 5


@pytest.mark.parametrize("api", ["chat", "completions batch"])
def test_dropped_stream_is_aborted(live: LiveServer, engine: LocalEngineClient, api: str) -> None:
    if api == "chat":
        path, body = "/v1/chat/completions", chat_body(engine, max_tokens=LONG)
    else:
        prompts = ["Once upon a time", "The weather today"]
        path, body = "/v1/completions", {"model": engine.model_id, "prompt": prompts, "n": 2}
    body.update(max_tokens=LONG, stream=True, ignore_eos=True)
    client = httpx.Client(base_url=live.url, headers=AUTH, timeout=30)
    with client, client.stream("POST", path, json=body) as r:
        events = 0
        for line in r.iter_lines():
            events += line.startswith("data: ")
            if events == 6:
                break
        busy = engine.stats()
        assert busy.running == (1 if api == "chat" else 4) and busy.kv_blocks_used > 0
    assert_freed_soon(engine, busy.steps_total)


def test_dropped_non_streaming_request_is_aborted(
    live: LiveServer, engine: LocalEngineClient
) -> None:
    body = json.dumps(chat_body(engine, max_tokens=LONG, ignore_eos=True)).encode()
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        wait_busy(engine)
        time.sleep(0.2)  # a few decode steps
        busy = engine.stats()
        assert busy.running == 1 and busy.kv_blocks_used > 0
    assert_freed_soon(engine, busy.steps_total)


async def test_cancelling_one_request_leaves_others_unchanged(
    live: LiveServer, engine: LocalEngineClient
) -> None:
    target = chat_body(engine, "Write a haiku about the sea.", max_tokens=24)
    async with httpx.AsyncClient(base_url=live.url, headers=AUTH, timeout=60) as client:
        alone = (await client.post("/v1/chat/completions", json=target)).json()
        together = asyncio.create_task(client.post("/v1/chat/completions", json=target))
        for drop_after in (2, 5):
            other = chat_body(engine, "Why is the sky blue?", max_tokens=LONG, stream=True)
            async with client.stream("POST", "/v1/chat/completions", json=other) as r:
                events = 0
                async for line in r.aiter_lines():
                    events += line.startswith("data: ")
                    if events == drop_after:
                        break
        result = (await together).json()
    assert result["choices"][0]["message"] == alone["choices"][0]["message"]
    await asyncio.to_thread(wait_idle, engine)


async def test_timeout_stops_the_work(make_client: AppFactory, engine: LocalEngineClient) -> None:
    client = make_client(request_timeout=0.5)
    body = chat_body(engine, max_tokens=LONG, ignore_eos=True)
    start = time.monotonic()
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 504 and r.json()["error"]["code"] == "request_timeout"
    assert time.monotonic() - start < 3
    await asyncio.to_thread(wait_idle, engine, 2.0)
    r = await client.post("/v1/chat/completions", json={**body, "stream": True})
    events = [e for e in r.text.split("\n\n") if e]
    assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "request_timeout"
    assert events[-1] == "data: [DONE]"
    await asyncio.to_thread(wait_idle, engine, 2.0)


async def test_merge_interleaves_and_closes() -> None:
    closed: list[int] = []

    async def numbers(tag: int, count: int, delay: float) -> AsyncIterator[int]:
        try:
            for i in range(count):
                await asyncio.sleep(delay)
                yield tag * 100 + i
        finally:
            closed.append(tag)

    got: list[tuple[int, Any]] = [
        x async for x in merge([numbers(0, 3, 0.001), numbers(1, 2, 0.0)])
    ]
    assert sorted(v for _, v in got) == [0, 1, 2, 100, 101]
    assert all(v // 100 == i for i, v in got)
    closed.clear()
    merged = merge([numbers(0, 100, 0.001), numbers(1, 100, 0.001)])
    async for _ in merged:
        break
    await merged.aclose()
    assert sorted(closed) == [0, 1]
