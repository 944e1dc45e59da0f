"""Raw HTTP against the OpenAI routes: malformed bodies, wrong types, caps, SSE framing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from augury.server.config import RequestLimits
from augury.server.engine_client import LocalEngineClient
from tests.server.conftest import AppFactory, chat_body

pytestmark = pytest.mark.anyio


def assert_envelope(r: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    for leak in ("pydantic", "Traceback", "errors.pydantic.dev", "ChatCompletionRequest"):
        assert leak not in error["message"]
    return error


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 200}}, "logit_bias"),
        ({"stop": 5}, "stop"),
        ({"seed": 2**70}, "seed"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": "hello"}, "messages"),
        ({"model": None}, "model"),
        ({"min_tokens": 9}, "min_tokens"),
        ({"top_k": -5}, "top_k"),
    ],
)
async def test_bad_fields_are_400_naming_the_field(
    make_client: AppFactory, engine: LocalEngineClient, fields: dict[str, Any], param: str
) -> None:
    client = make_client()
    r = await client.post("/v1/chat/completions", json=chat_body(engine, **fields))
    error = assert_envelope(r, 400, param)
    assert error["type"] == "invalid_request_error"


async def test_range_errors_name_value_and_range(
    make_client: AppFactory, engine: LocalEngineClient
) -> None:
    client = make_client()
    r = await client.post("/v1/chat/completions", json=chat_body(engine, temperature=7.5))
    message = assert_envelope(r, 400, "temperature")["message"]
    assert message == "temperature: must be <= 2.0, got 7.5"
    r = await client.post("/v1/chat/completions", json=chat_body(engine, min_p=0.5, top_k=2**30))
    message = assert_envelope(r, 400, "top_k")["message"]
    assert str(2**30) in message and "16777216" in message


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b"[1, 2]", {"content-type": "application/json"}),
        (b'"text"', {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
        (b'{"model": "x"}', {"content-type": "text/plain"}),
        (b"\xff\xfe", {"content-type": "application/json"}),
    ],
)
async def test_malformed_bodies_are_400(
    make_client: AppFactory, content: bytes, headers: dict[str, str]
) -> None:
    client = make_client()
    for path in ("/v1/chat/completions", "/v1/completions"):
        r = await client.post(path, content=content, headers=headers)
        assert_envelope(r, 400)


async def test_configured_caps(make_client: AppFactory, engine: LocalEngineClient) -> None:
    limits = RequestLimits(
        max_n=2, max_stop=2, max_stop_length=5, max_messages=2, max_tokens=10,
        max_prompt_tokens=60, max_top_logprobs=1, max_prompts=2,
    )  # fmt: skip
    client = make_client(limits=limits)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"n": 3}, "n"),
        ({"stop": ["a", "b", "c"]}, "stop"),
        ({"stop": "toolong"}, "stop"),
        ({"messages": [{"role": "user", "content": "hi"}] * 3}, "messages"),
        ({"max_tokens": 11}, "max_tokens"),
        ({"logprobs": True, "top_logprobs": 2}, "top_logprobs"),
        ({"messages": [{"role": "user", "content": "word " * 60}]}, "prompt"),
    ]
    for fields, param in cases:
        r = await client.post("/v1/chat/completions", json=chat_body(engine, **fields))
        assert "over this server's limit" in assert_envelope(r, 400, param)["message"]
    body = {"model": engine.model_id, "prompt": ["a", "b", "c"], "max_tokens": 1}
    assert_envelope(await client.post("/v1/completions", json=body), 400, "prompt")
    ok = await client.post("/v1/chat/completions", json=chat_body(engine, max_tokens=None))
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] <= 10


async def test_cache_sized_default_max_tokens(
    make_client: AppFactory, engine: LocalEngineClient
) -> None:
    # No max_tokens: the room left in context and cache; here 1456 cache tokens < 8192 context.
    client = make_client()
    body = chat_body(engine, max_tokens=None, stop=["."])
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text


async def test_sse_framing(make_client: AppFactory, engine: LocalEngineClient) -> None:
    client = make_client()
    body = chat_body(engine, stream=True, stream_options={"include_usage": True}, max_tokens=3)
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


async def test_unknown_route_and_method(make_client: AppFactory) -> None:
    client = make_client()
    assert_envelope(await client.get("/v1/nothing"), 404)
    r = await client.get("/v1/chat/completions")
    assert_envelope(r, 405)
    assert r.headers["allow"] == "POST"
    assert_envelope(await client.delete("/v1/models"), 405)
