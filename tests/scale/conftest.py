"""A local Ray instance (num_cpus=2) with the Augury application deployed on it: 2 replicas of
the default LLM (float32, 1 thread) and of a small ELM model; and the same models served by the
single-process server, for comparisons."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from augury.llm.engine import EngineConfig
from augury.scale.config import ScaleConfig
from augury.server.app import create_app
from augury.server.config import ServerConfig
from augury.server.engine_client import load_local_engine
from tests.live_server import LiveServer, free_port, start_server
from tests.predict.helpers import make_elm

ENGINE = EngineConfig(dtype="float32", kv_cache_memory=64 << 20, num_threads=1, max_num_seqs=16)
"""The engine of both servers: float32 greedy results do not depend on the batch."""
MODEL = "elm"


@dataclass
class RayServer:
    url: str
    config: ServerConfig
    scale: ScaleConfig


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_elm(root, MODEL)
    return root


@pytest.fixture(scope="module")
def ray_server(repository: Path) -> Iterator[RayServer]:
    """The application on Ray Serve, started for the module and shut down after it (Ray's
    processes and three model copies must not linger into the rest of the suite)."""
    pytest.importorskip("ray.serve")
    import ray
    from ray import serve

    from augury.scale.app import start

    config = ServerConfig(
        engine=ENGINE, port=free_port(), model_repository=str(repository), batch_dir=None
    )
    scale = ScaleConfig(
        replicas=2,
        llm_cpus=0,
        predict_cpus=0,
        report_interval_s=0.25,
        app_name="augury-test",
        ray_init={"num_cpus": 2, "include_dashboard": False, "log_to_driver": False},
    )
    start(config, scale)
    server = RayServer(f"http://127.0.0.1:{config.port}", config, scale)
    try:
        wait_for_replicas(server, {"llm": 2, f"model-{MODEL}": 2}, timeout=300)
        yield server
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def local_server(repository: Path) -> Iterator[LiveServer]:
    """The single-process server with the same engine and repository."""
    torch.set_num_threads(1)
    engine = load_local_engine(ENGINE)
    config = ServerConfig(model_repository=str(repository), batch_dir=None)
    server = start_server(create_app(config, engines=[engine]))
    yield server
    server.stop()
    asyncio.run(engine.shutdown())


def replicas(server: RayServer) -> list[dict[str, Any]]:
    """The /api/replicas entries."""
    response = httpx.get(f"{server.url}/api/replicas", timeout=30)
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def by_deployment(server: RayServer, deployment: str) -> dict[str, dict[str, Any]]:
    """replica id -> entry, for one deployment."""
    return {e["replica"]: e for e in replicas(server) if e["deployment"] == deployment}


def wait_for_replicas(
    server: RayServer, counts: dict[str, int], timeout: float, exclude: frozenset[str] = frozenset()
) -> None:
    """Until each deployment has `counts` live replicas (none of them in `exclude`)."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            seen = replicas(server)
        except httpx.HTTPError:
            seen = []
        live = {d: [e for e in seen if e["deployment"] == d and e["replica"] not in exclude]
                for d in counts}  # fmt: skip
        if all(len(live[d]) == n for d, n in counts.items()):
            return
        time.sleep(0.5)
    raise AssertionError(f"replicas not up after {timeout} s: {seen}")
