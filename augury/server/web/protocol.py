"""Response bodies of the dashboard's JSON routes (pydantic at the HTTP edge)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from augury.server.stats import ModelActivity, Percentiles


class LatencySummary(BaseModel):
    """Percentiles in seconds over the recent window; null when it holds no observation."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None

    @classmethod
    def of(cls, p: Percentiles) -> LatencySummary:
        return cls(count=p.count, p50=p.p50, p90=p.p90, p99=p.p99)


class ModelStats(BaseModel):
    """One generation model: engine figures now, and rates and latencies of late."""

    model: str
    running: int = Field(description="Sequences decoding")
    waiting: int = Field(description="Requests waiting for admission")
    kv_blocks_used: int
    kv_blocks_total: int
    kv_usage: float = Field(description="Fraction of KV cache blocks in use")
    prompt_tokens_total: int
    generation_tokens_total: int
    steps_total: int
    preemptions_total: int
    last_step_ms: float
    prefix_cache_queries: int
    prefix_cache_hits: int
    prefix_cache_hit_rate: float | None = Field(
        description="Hits / queries over the rate window (null without queries)"
    )
    requests_per_s: float = Field(description="Requests started per second, rate window")
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    ttft: LatencySummary = Field(description="Time to first token, seconds")
    itl: LatencySummary = Field(description="Inter-token latency, seconds")
    e2e: LatencySummary = Field(description="Arrival to last token, seconds")

    @classmethod
    def of(cls, a: ModelActivity) -> ModelStats:
        s = a.stats
        return cls(
            model=a.model,
            running=s.running,
            waiting=s.waiting,
            kv_blocks_used=s.kv_blocks_used,
            kv_blocks_total=s.kv_blocks_total,
            kv_usage=s.kv_usage,
            prompt_tokens_total=s.prompt_tokens_total,
            generation_tokens_total=s.generation_tokens_total,
            steps_total=s.steps_total,
            preemptions_total=s.preemptions_total,
            last_step_ms=s.last_step_ms,
            prefix_cache_queries=s.prefix_cache_queries,
            prefix_cache_hits=s.prefix_cache_hits,
            prefix_cache_hit_rate=a.prefix_cache_hit_rate,
            requests_per_s=a.requests_per_s,
            prompt_tokens_per_s=a.prompt_tokens_per_s,
            generation_tokens_per_s=a.generation_tokens_per_s,
            ttft=LatencySummary.of(a.ttft),
            itl=LatencySummary.of(a.itl),
            e2e=LatencySummary.of(a.e2e),
        )


class StatsResponse(BaseModel):
    object: Literal["stats"] = "stats"
    time: float = Field(description="Unix time of this snapshot")
    uptime_s: float
    window_s: float = Field(description="Latency percentiles cover this many recent seconds")
    rate_window_s: float = Field(description="Rates cover this many recent seconds")
    ready: bool
    models: list[ModelStats]


class ItemList(BaseModel):
    """A list in the OpenAI style. Items are free-form until their feature defines them."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
