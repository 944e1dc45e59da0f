"""augury.server.web.routes: the page is public, the JSON is behind the key, and every asset
the page references exists and ships with the package."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

from augury.server.app import create_app
from augury.server.config import ServerConfig
from augury.server.web.routes import STATIC_DIR
from tests.server.fakes import FakeEngine

KEY = "sk-routes-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ServerConfig(api_keys={"tester": KEY}), engines=[FakeEngine(tokens=5)])
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


async def test_jobs_and_streams_are_empty_lists_for_now(client: httpx.AsyncClient) -> None:
    for path in ("/api/jobs", "/api/streams"):
        assert (await client.get(path, headers=AUTH)).json() == {"object": "list", "data": []}


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
