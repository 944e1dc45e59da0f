"""Per-replica load made visible: the ingress's view of the board, Prometheus gauges per
replica on /metrics, and `GET /api/replicas` for dashboards and tests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from augury.llm.outputs import EngineStats
from augury.scale.load import ReplicaLoad, ensure_board, sum_stats
from augury.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class LoadView:
    """The latest board snapshot, refreshed in the background every `interval_s`; sync reads
    (EngineClient.stats, Prometheus collect) never wait on Ray."""

    def __init__(self, app_name: str, interval_s: float) -> None:
        self._board = ensure_board(app_name)
        self._interval_s = interval_s
        self.loads: list[ReplicaLoad] = []
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> list[ReplicaLoad]:
        self.loads = await self._board.snapshot.remote()
        return self.loads

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def of(self, deployment: str) -> list[ReplicaLoad]:
        return [load for load in self.loads if load.deployment == deployment]

    def engine_stats(self, deployment: str) -> EngineStats | None:
        """The deployment's summed engine figures (None before any report)."""
        return sum_stats(x.engine for x in self.of(deployment) if x.engine is not None)

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the board restarting must not kill the view
                log.warning("load board unreachable: %s", exc)
            await asyncio.sleep(self._interval_s)


class ReplicaCollector(Collector):
    """Gauges per replica, from the latest reports at scrape time."""

    def __init__(self, loads: Callable[[], Sequence[ReplicaLoad]]) -> None:
        self._loads = loads

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        replicas, ongoing, started, running, waiting, kv = families
        counts: dict[str, int] = {}
        for load in self._loads():
            labels = [load.deployment, load.replica]
            counts[load.deployment] = counts.get(load.deployment, 0) + 1
            ongoing.add_metric(labels, load.ongoing)
            started.add_metric(labels, load.requests_total)
            if load.engine is not None:
                running.add_metric(labels, load.engine.running)
                waiting.add_metric(labels, load.engine.waiting)
                kv.add_metric(labels, load.engine.kv_usage)
        for deployment, count in sorted(counts.items()):
            replicas.add_metric([deployment], count)
        yield from families

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily,
        GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
    ]:  # fmt: skip
        labels = ["deployment", "replica"]
        return (
            GaugeMetricFamily(
                "augury_replicas", "Live replicas per Ray Serve deployment", labels=["deployment"]
            ),
            GaugeMetricFamily("augury_replica_ongoing_requests", "Calls a replica serves now",
                              labels=labels),
            CounterMetricFamily("augury_replica_requests", "Calls a replica started",
                                labels=labels),
            GaugeMetricFamily("augury_replica_requests_running", "Sequences decoding",
                              labels=labels),
            GaugeMetricFamily("augury_replica_requests_waiting",
                              "Requests waiting for admission", labels=labels),
            GaugeMetricFamily("augury_replica_kv_cache_usage_ratio",
                              "Fraction of KV cache blocks in use", labels=labels),
        )  # fmt: skip


class ReplicaEntry(BaseModel):
    """One replica's latest report."""

    deployment: str
    replica: str
    actor_name: str = Field(description="The Ray actor (namespace 'serve')")
    ongoing: int = Field(description="Calls it serves now")
    requests_total: int = Field(description="Calls it started since it came up")
    running: int | None = Field(description="LLM replicas: sequences decoding")
    waiting: int | None = Field(description="LLM replicas: requests waiting for admission")
    kv_usage: float | None = Field(description="LLM replicas: fraction of KV cache in use")
    generation_tokens_total: int | None = None
    age_s: float = Field(description="Seconds since the report")

    @classmethod
    def of(cls, load: ReplicaLoad, now: float) -> ReplicaEntry:
        e = load.engine
        return cls(
            deployment=load.deployment,
            replica=load.replica,
            actor_name=load.actor_name,
            ongoing=load.ongoing,
            requests_total=load.requests_total,
            running=None if e is None else e.running,
            waiting=None if e is None else e.waiting,
            kv_usage=None if e is None else e.kv_usage,
            generation_tokens_total=None if e is None else e.generation_tokens_total,
            age_s=max(0.0, now - load.reported_at),
        )


class ReplicasResponse(BaseModel):
    object: Literal["replicas"] = "replicas"
    data: list[ReplicaEntry]


def _view(request: Request) -> LoadView:
    view: LoadView = request.app.state.replica_view
    return view


def install(app: FastAPI, view: LoadView, registry: CollectorRegistry) -> None:
    """Add the per-replica gauges to the app's registry and `GET /api/replicas`."""
    registry.register(ReplicaCollector(lambda: view.loads))
    app.state.replica_view = view
    router = APIRouter(prefix="/api", tags=["dashboard"])

    @router.get("/replicas")
    async def replicas(view: Annotated[LoadView, Depends(_view)]) -> ReplicasResponse:
        """Every live replica's load (fresh: read from the board now)."""
        loads = await view.refresh()
        now = time.time()
        return ReplicasResponse(data=[ReplicaEntry.of(x, now) for x in loads])

    app.include_router(router)
