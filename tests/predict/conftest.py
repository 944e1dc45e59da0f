"""Prediction test fixtures: a temporary repository and a live server for tritonclient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from augury.predict.repository import ModelRepository
from augury.server.kserve import build_embeddings_router, build_router, repository_lifespan
from tests.live_server import start_server


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def kserve_app(repository: ModelRepository) -> FastAPI:
    """A small app with the KServe and embeddings routers (what create_app will mount)."""
    app = FastAPI(lifespan=repository_lifespan(repository))
    app.include_router(build_router(repository))
    app.include_router(build_embeddings_router(repository))
    return app


class Live:
    """A live uvicorn server for `app` while in the `with` block; url is host:port (what
    tritonclient takes)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.url = ""

    def __enter__(self) -> Live:
        self._server = start_server(self.app)
        self.url = self._server.url.removeprefix("http://")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


@pytest.fixture
def live_repository(tmp_path: Path) -> Iterator[tuple[Live, Path]]:
    """A live server over an (initially empty) repository in tmp_path/models."""
    root = tmp_path / "models"
    root.mkdir()
    from tests.predict.helpers import make_elm, make_linear

    make_linear(root)
    make_elm(root, "elm")
    with Live(kserve_app(ModelRepository(root, poll_interval_s=None))) as live:
        yield live, root
