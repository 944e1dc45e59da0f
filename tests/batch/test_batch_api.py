"""The OpenAI Batch API through the official `openai` client (in-process, httpx ASGI)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from augury.llm.engine import EngineConfig
from augury.server.app import create_app, server_state
from augury.server.batch_api import BatchService, batch_router
from augury.server.config import ServerConfig
from augury.server.engine_client import LocalEngineClient, load_local_engine

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def engine() -> Iterator[LocalEngineClient]:
    client = load_local_engine(
        EngineConfig(dtype="float32", kv_cache_memory=64 << 20, num_threads=1)
    )
    yield client
    asyncio.run(client.shutdown())


def make_app(engine: LocalEngineClient, root: Path) -> tuple[FastAPI, BatchService]:
    app = create_app(ServerConfig(batch_dir=None), engines=[engine])  # only this service
    service = BatchService(server_state(app), root, max_in_flight=16)
    app.include_router(batch_router(service))
    return app, service


@pytest.fixture
async def api(
    engine: LocalEngineClient, tmp_path: Path
) -> AsyncIterator[tuple[openai.AsyncOpenAI, BatchService]]:
    app, service = make_app(engine, tmp_path / "batch")
    await service.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield openai.AsyncOpenAI(api_key="x", base_url="http://test/v1", http_client=http), service
    await service.stop()


def chat_line(engine: LocalEngineClient, i: int, **body: Any) -> str:
    request = {
        "model": engine.model_id, "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": f"Count to {i}"}], **body,
    }  # fmt: skip
    line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": request}  # fmt: skip
    return json.dumps(line)


async def wait_for(client: openai.AsyncOpenAI, batch_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        assert time.monotonic() < deadline, f"batch stuck in {batch.status}"
        await asyncio.sleep(0.1)


async def test_files_and_batches_with_the_openai_client(
    api: tuple[openai.AsyncOpenAI, BatchService], engine: LocalEngineClient
) -> None:
    client, _ = api
    lines = [chat_line(engine, i) for i in range(6)]
    lines.append(chat_line(engine, 6, max_tokens=10**6))  # longer than the context: fails alone
    data = ("\n".join(lines) + "\n").encode()
    uploaded = await client.files.create(file=("requests.jsonl", data), purpose="batch")
    assert uploaded.bytes == len(data) and uploaded.purpose == "batch"
    assert (await client.files.retrieve(uploaded.id)).filename == "requests.jsonl"
    assert (await client.files.content(uploaded.id)).content == data
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    done = await wait_for(client, batch.id)
    assert done.status == "completed", done.errors
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (7, 6)
    assert done.request_counts.failed == 1
    assert done.in_progress_at and done.completed_at and done.output_file_id
    out = [
        json.loads(x)
        for x in (await client.files.content(done.output_file_id)).text.split("\n")
        if x
    ]
    assert sorted(r["custom_id"] for r in out) == [f"r{i}" for i in range(6)]
    body = out[0]["response"]["body"]
    assert out[0]["response"]["status_code"] == 200 and body["object"] == "chat.completion"
    assert body["usage"]["completion_tokens"] <= 4 and body["choices"][0]["message"]["content"]
    assert done.error_file_id
    err = json.loads((await client.files.content(done.error_file_id)).text)
    assert err["custom_id"] == "r6" and err["response"]["status_code"] == 400
    assert "exceeds" in err["response"]["body"]["error"]["message"]
    listed = await client.batches.list()
    assert [b.id for b in listed.data] == [batch.id]
    files = await client.files.list()
    assert {f.id for f in files.data} >= {uploaded.id, done.output_file_id}
    assert (await client.files.delete(uploaded.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(uploaded.id)


async def test_invalid_input_fails_the_batch(
    api: tuple[openai.AsyncOpenAI, BatchService], engine: LocalEngineClient
) -> None:
    client, _ = api
    data = (chat_line(engine, 0) + "\n{broken\n").encode()
    uploaded = await client.files.create(file=("bad.jsonl", data), purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = await wait_for(client, batch.id)
    assert done.status == "failed" and done.errors and done.errors.data
    assert done.errors.data[0].line == 2
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve("batch_nope")


async def test_cancel(
    api: tuple[openai.AsyncOpenAI, BatchService], engine: LocalEngineClient
) -> None:
    client, _ = api
    data = "\n".join(chat_line(engine, i, max_tokens=32) for i in range(200)).encode()
    uploaded = await client.files.create(file=("many.jsonl", data), purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while (await client.batches.retrieve(batch.id)).status == "validating":
        await asyncio.sleep(0.05)
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = await wait_for(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at
    assert done.request_counts is not None and done.request_counts.completed < 200


async def test_restart_resumes_unfinished_batches(
    engine: LocalEngineClient, tmp_path: Path
) -> None:
    root = tmp_path / "batch"
    _, service = make_app(engine, root)
    await service.start()
    lines = [chat_line(engine, i, max_tokens=8) for i in range(64)]
    uploaded = service.store.add_file("batch", "in.jsonl", [("\n".join(lines) + "\n").encode()])
    from augury.server.batch_api import CreateBatchRequest

    batch = await service.create(
        CreateBatchRequest(input_file_id=uploaded["id"], endpoint="/v1/chat/completions")
    )
    while service.get(batch["id"])["request_counts"]["completed"] < 16:
        await asyncio.sleep(0.05)
    await service.stop()  # the "server" goes away mid-job
    assert service.get(batch["id"])["status"] == "in_progress"
    _, again = make_app(engine, root)
    await again.start()
    deadline = time.monotonic() + 120
    while again.get(batch["id"])["status"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    done = again.get(batch["id"])
    out = again.store.file_path(done["output_file_id"]).read_text().splitlines()
    ids = [json.loads(x)["custom_id"] for x in out]
    assert sorted(ids) == sorted(f"r{i}" for i in range(64))  # each exactly once
    await again.stop()


async def _ttft(http: httpx.AsyncClient, model: str) -> float:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
            "stream": True}  # fmt: skip
    start = time.perf_counter()
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                return time.perf_counter() - start
    return time.perf_counter() - start


TTFT_BOUND_S = 1.5
"""Interactive TTFT with a batch running may exceed the idle TTFT by at most this much."""


async def test_batch_never_starves_interactive_requests(
    engine: LocalEngineClient, tmp_path: Path
) -> None:
    app, service = make_app(engine, tmp_path / "batch")
    await service.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        idle = statistics.median([await _ttft(http, engine.model_id) for _ in range(3)])
        lines = [chat_line(engine, i, max_tokens=32) for i in range(300)]
        uploaded = service.store.add_file("batch", "in.jsonl", ["\n".join(lines).encode()])
        from augury.server.batch_api import CreateBatchRequest

        batch = await service.create(
            CreateBatchRequest(input_file_id=uploaded["id"], endpoint="/v1/chat/completions")
        )
        while engine.stats().running < 8:
            await asyncio.sleep(0.05)
        busy = [await _ttft(http, engine.model_id) for _ in range(5)]
        assert service.get(batch["id"])["status"] == "in_progress"
        service.cancel(batch["id"])
    await service.stop()
    busy_ms = statistics.median(busy) * 1e3
    print(f"TTFT idle {idle * 1e3:.0f} ms, with a batch running {busy_ms:.0f} ms")
    assert statistics.median(busy) <= idle + TTFT_BOUND_S
