"""Request ids, JSON access logs and the last-resort 500 envelope."""

from __future__ import annotations

import json
import logging

import pytest

from augury.server.logging import ACCESS_LOGGER, JsonFormatter
from tests.server.conftest import AppFactory
from tests.server.fakes import FakeEngine

pytestmark = pytest.mark.anyio


def chat(**fields: object) -> dict[str, object]:
    return {"model": "fake", "messages": [{"role": "user", "content": "hi"}], **fields}


async def test_request_id_is_echoed_or_made(make_client: AppFactory) -> None:
    client = make_client(engines=[FakeEngine()])
    r = await client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = (await client.get("/health")).headers["x-request-id"]
    assert len(made) == 32
    odd = await client.get("/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert odd.headers["x-request-id"] != "bad id\twith spaces"


async def test_access_log_is_structured(
    make_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(engines=[FakeEngine()])
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await client.post("/v1/chat/completions", json=chat(), headers={"X-Request-Id": "r-1"})
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "r-1" and line["status"] == 200
    assert line["path"] == "/v1/chat/completions" and line["method"] == "POST"
    assert line["api_key"] == "anonymous" and line["duration_ms"] >= 0
    assert line["level"] == "info" and line["logger"] == ACCESS_LOGGER


async def test_internal_error_is_a_500_envelope_without_traceback(
    make_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine(tokenize_error=RuntimeError("secret internals"))
    client = make_client(engines=[engine])
    with caplog.at_level(logging.ERROR):
        r = await client.post("/v1/chat/completions", json=chat(), headers={"X-Request-Id": "r-9"})
    assert r.status_code == 500
    error = r.json()["error"]
    assert "secret" not in error["message"] and "Traceback" not in r.text
    assert "r-9" in error["message"] and error["type"] == "server_error"
    logged = [rec for rec in caplog.records if getattr(rec, "request_id", None) == "r-9"]
    assert logged and logged[0].exc_info is not None


async def test_engine_failure_mid_request(make_client: AppFactory) -> None:
    client = make_client(engines=[FakeEngine(engine_error="CUDA exploded")])
    r = await client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 500 and "CUDA" not in r.text
    r = await client.post("/v1/chat/completions", json=chat(stream=True))
    events = [e for e in r.text.split("\n\n") if e]
    assert json.loads(events[-2].removeprefix("data: "))["error"]["type"] == "server_error"
    assert events[-1] == "data: [DONE]"


def test_json_formatter_keeps_extras_and_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("now",), None)
        import sys

        record.exc_info = sys.exc_info()
    record.request_id = "q"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "failed now" and line["request_id"] == "q"
    assert "ValueError: boom" in line["exc"]
