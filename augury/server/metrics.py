"""Prometheus metrics in a registry of the app's own (never the process-global one)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from augury.server.engine_client import EngineClient
from augury.server.stats import RecentActivity

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.5, 1.0, 2.5)


class EngineCollector(Collector):
    """Gauges read from each engine's stats at scrape time."""

    def __init__(self, engines: Callable[[], Mapping[str, EngineClient]]) -> None:
        self._engines = engines

    def describe(self) -> Iterator[Metric]:
        yield from self._families()  # lets the registry check names without reading stats

    def collect(self) -> Iterator[Metric]:
        running, waiting, kv = self._families()
        for model_id, engine in self._engines().items():
            stats = engine.stats()
            running.add_metric([model_id], stats.running)
            waiting.add_metric([model_id], stats.waiting)
            kv.add_metric([model_id], stats.kv_usage)
        yield from (running, waiting, kv)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["model"]
        return (
            GaugeMetricFamily("augury_requests_running", "Sequences decoding", labels=labels),
            GaugeMetricFamily(
                "augury_requests_waiting", "Requests waiting for admission", labels=labels
            ),
            GaugeMetricFamily(
                "augury_kv_cache_usage_ratio", "Fraction of KV cache blocks in use", labels=labels
            ),
        )


class ServerMetrics:
    """All metrics of one app: Prometheus series since start, and `recent` activity (the last
    minute or so) for the web dashboard."""

    def __init__(self, engines: Callable[[], Mapping[str, EngineClient]]) -> None:
        self.recent = RecentActivity()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ttft = Histogram(
            "augury_time_to_first_token_seconds", "Time to first token", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            "augury_inter_token_latency_seconds", "Time between output steps of a request",
            ["model"], buckets=_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.e2e = Histogram(
            "augury_e2e_request_latency_seconds", "Time from arrival to last token", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue = Histogram(
            "augury_request_queue_time_seconds",
            "Time before the first engine step of a request (TTFT less its prefill step)",
            ["model"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "augury_prompt_tokens", "Prompt tokens of served requests", ["model"], registry=r
        )
        self.generation_tokens = Counter(
            "augury_generation_tokens", "Generated tokens of served requests", ["model"], registry=r
        )
        self.requests = Counter(
            "augury_http_requests", "HTTP requests by route, status and API key name",
            ["route", "status", "api_key"], registry=r,
        )  # fmt: skip
        r.register(EngineCollector(engines))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def track(self, model: str) -> RequestTimer:
        return RequestTimer(self, model)


class RequestTimer:
    """Latency bookkeeping of one generation request."""

    def __init__(self, metrics: ServerMetrics, model: str) -> None:
        self.metrics = metrics
        self.model = model
        self.start = time.monotonic()
        self._last: float | None = None
        metrics.recent.started(model)

    def output(self, step_ms: float) -> None:
        """Call on each engine output; `step_ms` is the engine's last step time."""
        now = time.monotonic()
        if self._last is None:
            ttft = now - self.start
            self.metrics.ttft.labels(self.model).observe(ttft)
            self.metrics.queue.labels(self.model).observe(max(0.0, ttft - step_ms / 1e3))
            self.metrics.recent.first_token(self.model, ttft)
        else:
            self.metrics.itl.labels(self.model).observe(now - self._last)
            self.metrics.recent.inter_token(self.model, now - self._last)
        self._last = now

    def finish(self, prompt_tokens: int, completion_tokens: int) -> None:
        e2e = time.monotonic() - self.start
        self.metrics.e2e.labels(self.model).observe(e2e)
        self.metrics.recent.finished(self.model, e2e)
        self.metrics.prompt_tokens.labels(self.model).inc(prompt_tokens)
        self.metrics.generation_tokens.labels(self.model).inc(completion_tokens)
