"""augury.server.web.routes: the page is public, the JSON is behind the key, jobs and streams
list the real Batch API's batches and the real streaming sessions, and every asset the page
references exists and ships with the package."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from collections.abc import AsyncIterator, Iterator
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

from augury.server.app import create_app
from augury.server.config import ServerConfig
from augury.server.web.routes import STATIC_DIR
from augury.stream.client import StreamClient
from tests.server.conftest import LiveServer, start_server
from tests.server.fakes import FakeEngine

KEY = "sk-routes-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio


def config(tmp: Path, batch_api: bool = True) -> ServerConfig:
    """Auth on, the Batch API's store under `tmp` (or off), no predictive models."""
    batch_dir = str(tmp / "batch") if batch_api else None
    return ServerConfig(api_keys={"tester": KEY}, batch_dir=batch_dir, model_repository=None)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config(tmp_path), engines=[FakeEngine(tokens=5)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_the_page_needs_no_key_and_allows_only_its_own_origin(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    script = await client.get("/web/main.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert (await client.head("/web/style.css")).status_code == 200


@pytest.mark.parametrize("path", ["/web/nope.js", "/web/%2e%2e/routes.py", "/web/..%2f..%2fapp.py"])
async def test_unknown_assets_are_a_404_envelope(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


async def test_other_routes_still_need_the_key(client: httpx.AsyncClient) -> None:
    for path in ("/api/stats", "/api/jobs", "/api/streams", "/v1/models"):
        assert (await client.get(path)).status_code == 401, path
    assert (await client.post("/", json={})).status_code == 401  # only GET/HEAD are public


async def test_stats_reflect_served_requests(client: httpx.AsyncClient) -> None:
    before = (await client.get("/api/stats", headers=AUTH)).json()
    (model,) = before["models"]
    assert model["model"] == "fake" and model["ttft"]["count"] == 0
    assert before["ready"] is True and before["window_s"] == 60
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    for _ in range(2):
        answer = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert answer.status_code == 200
    (model,) = (await client.get("/api/stats", headers=AUTH)).json()["models"]
    assert model["ttft"]["count"] == 2 and model["e2e"]["count"] == 2
    assert model["itl"]["count"] == 8  # 5 outputs each: 1 first + 4 gaps
    assert model["requests_per_s"] == pytest.approx(2 / 10)
    assert model["kv_blocks_total"] == 64 and model["kv_usage"] == 0


async def submit(client: httpx.AsyncClient, rows: int) -> str:
    lines = [
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}})
        for i in range(rows)
    ]  # fmt: skip
    upload = await client.post(
        "/v1/files", headers=AUTH, data={"purpose": "batch"},
        files={"file": ("rows.jsonl", "\n".join(lines).encode())},
    )  # fmt: skip
    assert upload.status_code == 200, upload.text
    body = {"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions"}
    batch = await client.post("/v1/batches", json=body, headers=AUTH)
    assert batch.status_code == 200, batch.text
    batch_id: str = batch.json()["id"]
    return batch_id


async def test_jobs_list_the_batch_api_batches_with_progress(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/jobs", headers=AUTH)).json() == {
        "object": "list", "enabled": True, "total": 0, "data": []
    }  # fmt: skip
    first = await submit(client, 3)
    second = await submit(client, 5)
    async with asyncio.timeout(30):
        while (await client.get(f"/v1/batches/{second}", headers=AUTH)).json()["status"] != (
            "completed"
        ):
            await asyncio.sleep(0.05)
    jobs = (await client.get("/api/jobs", headers=AUTH)).json()
    assert jobs["total"] == 2
    assert [j["id"] for j in jobs["data"]] == [second, first]  # newest first
    newest = jobs["data"][0]
    assert newest["status"] == "completed" and newest["progress"] == 1.0
    assert newest["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert newest["finished_at"] >= newest["in_progress_at"] >= newest["created_at"]
    limited = (await client.get("/api/jobs?limit=1", headers=AUTH)).json()
    assert [j["id"] for j in limited["data"]] == [second] and limited["total"] == 2
    bad = await client.get("/api/jobs?limit=0", headers=AUTH)
    assert bad.status_code == 400 and "limit" in bad.text


async def test_jobs_say_when_the_batch_api_is_off(tmp_path: Path) -> None:
    app = create_app(config(tmp_path, batch_api=False), engines=[FakeEngine()])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        jobs = (await c.get("/api/jobs", headers=AUTH)).json()
    assert jobs == {"object": "list", "enabled": False, "total": 0, "data": []}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(create_app(config(tmp_path), engines=[FakeEngine()]))
    yield server
    server.stop()


async def test_streams_list_sessions_with_counters_and_rates(live: LiveServer) -> None:
    url = live.url.replace("http://", "ws://") + "/v1/streams"
    window = {"kind": "count", "size": 10, "stride": 10}
    async with (
        httpx.AsyncClient(base_url=live.url, headers=AUTH) as http,
        StreamClient(url, "zscore", ["x"], window=window, api_key=KEY) as stream,
    ):
        assert stream.session_id is not None

        async def send_and_wait(start: int, results: int) -> dict[str, object]:
            await stream.send(
                [
                    {"t": i * 0.01, "values": {"x": float(i)}}
                    for i in range(start, start + 10 * results)
                ]
            )
            async with asyncio.timeout(10):
                while stream.last_result_seq < start // 10 + results - 1:
                    await stream.recv()
            listed = (await http.get("/api/streams")).json()
            assert listed["total"] == 1
            (item,) = listed["data"]
            assert isinstance(item, dict)
            return item

        first = await send_and_wait(0, 2)
        assert first["id"] == stream.session_id and first["state"] == "live"
        assert (first["events_in"], first["results_out"], first["model"]) == (20, 2, "zscore")
        assert first["events_per_s"] is None  # the first poll has nothing to difference
        await asyncio.sleep(0.2)
        second = await send_and_wait(20, 3)
        assert second["events_in"] == 50
        assert isinstance(second["events_per_s"], float) and second["events_per_s"] > 0
        await stream.close()
        assert (await http.get("/api/streams")).json() == {"object": "list", "total": 0, "data": []}


def test_every_asset_the_page_references_exists() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="/web/([^"]+)"', html)
    modules = [
        name
        for js in STATIC_DIR.glob("*.js")
        for name in re.findall(r'from "\./([^"]+)"', js.read_text())
    ]
    assert refs and modules
    for name in refs + modules:
        assert (STATIC_DIR / name).is_file(), name
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "no CDN: everything offline"


def test_package_data_ships_every_static_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["augury.server.web"]
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            relative = path.relative_to(STATIC_DIR.parent).as_posix()
            assert any(fnmatch(relative, p) for p in patterns), f"{relative} is not package data"
