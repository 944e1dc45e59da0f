"""Prediction test fixtures: a temporary repository and a live server for tritonclient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from augury.predict.repository import ModelRepository
from augury.server.kserve import build_embeddings_router, build_router, repository_lifespan
from augury.server.kserve.fastpath import InferFastPath
from tests.live_server import start_server


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def kserve_app(repository: ModelRepository, fast_path: bool = True) -> FastAPI:
    """A small app with the KServe and embeddings routers and, as create_app mounts it, the
    ASGI fast path for infer requests (fast_path=False: the FastAPI route answers them)."""
    app = FastAPI(lifespan=repository_lifespan(repository))
    app.include_router(build_router(repository))
    app.include_router(build_embeddings_router(repository))
    if fast_path:
        app.add_middleware(InferFastPath, repository=repository)
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


@pytest.fixture(params=["fast-path", "route"])
def live_repository(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Live, Path]]:
    """A live server over a repository in tmp_path/models holding a linear ONNX model and an
    ELM; infer requests answered by the ASGI fast path, then by the FastAPI route."""
    root = tmp_path / "models"
    root.mkdir()
    from tests.predict.helpers import make_elm, make_linear

    make_linear(root)
    make_elm(root, "elm")
    app = kserve_app(ModelRepository(root, poll_interval_s=None), request.param == "fast-path")
    with Live(app) as live:
        yield live, root
