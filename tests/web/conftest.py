"""Web tests: a live server with real components (engine, Batch API, streaming sessions,
KServe router over a model repository of small real models, API keys on) and a headless
Chromium driven by Playwright. Browser tests skip, saying why, when Debian's chromium or the
playwright package is missing (`make install` provides both)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from augury.server.app import create_app
from augury.server.config import ServerConfig
from augury.server.engine_client import LocalEngineClient
from augury.stream.config import StreamConfig
from tests.server.conftest import LiveServer, start_server

if TYPE_CHECKING:
    from playwright.sync_api import Page

KEY = "sk-web-test-0123456789"
CHROMIUM = Path(os.environ.get("AUGURY_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
"""Screenshots of the browser tests."""


@pytest.fixture(scope="session")
def web_engine(local_engine: LocalEngineClient) -> LocalEngineClient:
    return local_engine


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with two small real models: "digits" (an ELM reading 8x8 PNG
    images, trained on scikit-learn's bundled digits) and "linear" (ONNX, 2 features ->
    softmax over labels a, b, c)."""
    from augury.predict.examples import digits
    from tests.predict.helpers import make_linear

    root = tmp_path_factory.mktemp("models")
    digits.build(root, n_hidden=256)
    make_linear(root)
    return root


def web_config(tmp: Path, repository: Path | None = None, **fields: Any) -> ServerConfig:
    """The server's config with every stateful folder under `tmp` (never the working
    directory's data/ or models/)."""
    return ServerConfig(
        api_keys={"tester": KEY},
        batch_dir=str(tmp / "batch"),
        model_repository=str(repository) if repository is not None else None,
        streams=StreamConfig(resume_timeout_s=60, idle_timeout_s=60),
        **fields,
    )


@pytest.fixture(scope="module")
def web_server(
    web_engine: LocalEngineClient, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    app = create_app(
        web_config(tmp_path_factory.mktemp("web"), model_repository), engines=[web_engine]
    )
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
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def screenshot_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def open_with_key(page: Page, url: str) -> None:
    """Load the page; it asks for the key (the server needs one) and keeps it for the tab."""
    from playwright.sync_api import expect

    page.goto(url)
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.fill("#key-input", KEY)
    page.click("#key-save")
    expect(dialog).to_be_hidden()
