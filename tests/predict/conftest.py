"""Prediction test fixtures: a temporary repository and a live server for tritonclient."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from augury.predict.repository import ModelRepository
from augury.server.kserve import build_embeddings_router, build_router, repository_lifespan


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def kserve_app(repository: ModelRepository) -> FastAPI:
    """A small app with the KServe and embeddings routers (what create_app will mount)."""
    app = FastAPI(lifespan=repository_lifespan(repository))
    app.include_router(build_router(repository))
    app.include_router(build_embeddings_router(repository))
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Live:
    """A uvicorn server in a thread on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Live:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


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
