"""Web tests: a live server (real engine, API keys on, a fake KServe router in front) and a
headless Chromium driven by Playwright. Browser tests skip, saying why, when Debian's chromium
or the playwright package is missing (`make install` provides both)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from augury.llm.engine import EngineConfig
from augury.server.app import create_app
from augury.server.config import ServerConfig
from augury.server.engine_client import LocalEngineClient, load_local_engine
from tests.server.conftest import LiveServer, start_server
from tests.web import fake_kserve

KEY = "sk-web-test-0123456789"
CHROMIUM = Path(os.environ.get("AUGURY_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
"""Screenshots of the browser tests (git-ignored)."""


@pytest.fixture(scope="session")
def web_engine() -> Iterator[LocalEngineClient]:
    torch.set_num_threads(1)
    config = EngineConfig(dtype="float32", kv_cache_memory=64 << 20, num_threads=1)
    client = load_local_engine(config)
    yield client
    asyncio.run(client.shutdown())


@pytest.fixture(scope="module")
def kserve_calls() -> list[dict[str, Any]]:
    """Infer bodies the fake KServe router received."""
    return []


@pytest.fixture(scope="module")
def web_server(
    web_engine: LocalEngineClient, kserve_calls: list[dict[str, Any]]
) -> Iterator[LiveServer]:
    """The app with auth on and the fake KServe routes placed first, so they answer even once
    the real KServe routes are mounted by create_app."""
    app = create_app(ServerConfig(api_keys={"tester": KEY}), engines=[web_engine])
    fake = fake_kserve.build_router(kserve_calls)
    app.router.routes[:0] = fake.routes
    server = start_server(app)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: run `make install` as root (installs Debian's "
            "chromium) or `apt-get install chromium`"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def screenshot_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
