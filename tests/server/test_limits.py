"""Body size limit, per-key rate limits and the bounded queue."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from augury.llm.engine import QueueFullError
from augury.server.config import RateLimits, RequestLimits
from augury.server.errors import APIError
from augury.server.limits import RateLimiter
from tests.server.conftest import AppFactory
from tests.server.fakes import FakeEngine

pytestmark = pytest.mark.anyio

KEYS = {"alice": "sk-alice-000000", "bob": "sk-bob-11111111"}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def chat(model: str = "fake", **fields: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=2, tokens_per_minute=None, clock=clock)
    limiter.acquire("a")
    limiter.acquire("a")
    limiter.acquire("b")  # keys have separate budgets
    with pytest.raises(APIError) as refused:
        limiter.acquire("a")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "30"
    clock.now = 30.0  # half a minute refills one request
    limiter.acquire("a")


def test_tokens_per_minute_are_charged_after_use() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=None, tokens_per_minute=100, clock=clock)
    limiter.acquire("a")
    limiter.charge("a", 160)  # may overdraw once...
    with pytest.raises(APIError) as refused:
        limiter.acquire("a")  # ...then waits until the budget is positive again
    assert refused.value.headers["Retry-After"] == "37"  # (1 + 60) tokens at 100/min
    clock.now = 37.0
    limiter.acquire("a")


def test_disabled_limiter_never_refuses() -> None:
    limiter = RateLimiter(None, None)
    for _ in range(1000):
        limiter.acquire("a")
    assert not limiter.enabled


async def test_rate_limit_per_key_over_http(make_client: AppFactory) -> None:
    client = make_client(
        engines=[FakeEngine()], api_keys=KEYS, rate_limits=RateLimits(requests_per_minute=2)
    )
    for _ in range(2):
        assert (
            await client.post("/v1/chat/completions", json=chat(), headers=auth("alice"))
        ).status_code == 200
    r = await client.post("/v1/chat/completions", json=chat(), headers=auth("alice"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    r = await client.post("/v1/chat/completions", json=chat(), headers=auth("bob"))
    assert r.status_code == 200


async def test_full_queue_is_429_with_retry_after(make_client: AppFactory) -> None:
    client = make_client(engines=[FakeEngine(fail_with=QueueFullError("1024 waiting"))])
    for stream in (False, True):
        r = await client.post("/v1/chat/completions", json=chat(stream=stream))
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_full"


async def test_declared_body_size_over_limit_is_413(make_client: AppFactory) -> None:
    client = make_client(engines=[FakeEngine()], limits=RequestLimits(max_body_bytes=1000))
    big = chat(user="u" * 2000)
    r = await client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_chunked_body_over_limit_is_413(make_client: AppFactory) -> None:
    client = make_client(engines=[FakeEngine()], limits=RequestLimits(max_body_bytes=1000))

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "fake", "messages": [{"role": "user", "content": "'
        for _ in range(50):
            yield b"x" * 100
        yield b'"}]}'

    r = await client.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
