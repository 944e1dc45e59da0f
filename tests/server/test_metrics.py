"""Prometheus metrics: per-app registry, latency histograms, gauges, counters by key name."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from augury.server.config import key_name
from augury.server.engine_client import LocalEngineClient
from tests.server.conftest import AppFactory, chat_body

pytestmark = pytest.mark.anyio

KEY = "sk-metrics-0123456"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def test_metrics_after_requests(make_client: AppFactory, engine: LocalEngineClient) -> None:
    client = make_client(api_keys={key_name(KEY): KEY})
    auth = {"Authorization": f"Bearer {KEY}"}
    r = await client.post(
        "/v1/chat/completions", json=chat_body(engine, max_tokens=4), headers=auth
    )
    usage = r.json()["usage"]
    await client.post("/v1/chat/completions", json=chat_body(engine, n=0), headers=auth)
    await client.get("/v1/models")  # no key: 401
    text = (await client.get("/metrics", headers=auth)).text
    assert KEY not in text
    got = samples(text)
    model = (("model", engine.model_id),)
    for name in ("time_to_first_token", "e2e_request_latency", "request_queue_time"):
        assert got[(f"augury_{name}_seconds_count", model)] == 1
    assert got[("augury_inter_token_latency_seconds_count", model)] == 3  # 4 tokens, 3 gaps
    assert got[("augury_prompt_tokens_total", model)] == usage["prompt_tokens"]
    assert got[("augury_generation_tokens_total", model)] == 4
    assert got[("augury_requests_running", model)] == 0
    assert ("augury_kv_cache_usage_ratio", model) in got
    assert ("augury_requests_waiting", model) in got
    name = key_name(KEY)
    chat = "/v1/chat/completions"
    requests = "augury_http_requests_total"
    assert got[(requests, (("api_key", name), ("route", chat), ("status", "200")))] == 1
    assert got[(requests, (("api_key", name), ("route", chat), ("status", "400")))] == 1
    assert got[(requests, (("api_key", "none"), ("route", "unmatched"), ("status", "401")))] == 1


async def test_each_app_has_its_own_registry(
    make_client: AppFactory, engine: LocalEngineClient
) -> None:
    first, second = make_client(), make_client()
    await first.get("/v1/models")
    assert 'route="/v1/models"' in (await first.get("/metrics")).text
    assert 'route="/v1/models"' not in (await second.get("/metrics")).text
    assert REGISTRY.get_sample_value("augury_http_requests_total") is None
