"""Response bodies of the dashboard's JSON routes (pydantic at the HTTP edge)."""

from __future__ import annotations

from typing import Literal

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


class RequestCounts(BaseModel):
    """A batch's requests: all of them, and those answered and failed so far."""

    total: int = 0
    completed: int = 0
    failed: int = 0


class JobItem(BaseModel):
    """One batch of the OpenAI Batch API, as the dashboard shows it."""

    id: str
    status: str = Field(description="validating, in_progress, finalizing, completed, failed, ...")
    endpoint: str
    request_counts: RequestCounts
    progress: float | None = Field(
        description="(completed + failed) / total, 0..1; null while the total is unknown"
    )
    rows_per_s: float | None = Field(
        description="Requests finished per second since the batch started (null before)"
    )
    created_at: int = Field(description="Unix seconds")
    in_progress_at: int | None
    finished_at: int | None = Field(description="When it completed, failed or was cancelled")
    error: str | None = Field(description="The first error of a failed batch")


class JobList(BaseModel):
    object: Literal["list"] = "list"
    enabled: bool = Field(description="False when the server runs without the Batch API")
    total: int = Field(description="Batches in the store (data holds the newest)")
    data: list[JobItem]


class StreamItem(BaseModel):
    """One streaming session: live (a client attached) or resumable (awaiting a resume)."""

    id: str
    model: str
    key_name: str = Field(description="Name of the API key that opened it")
    state: Literal["live", "resumable"]
    channels: list[str]
    events_in: int = Field(description="Events accepted")
    results_out: int = Field(description="Windows scored (one result each)")
    duplicates: int = Field(description="Resent events skipped")
    late_dropped: int = Field(description="Events dropped for arriving too late")
    queue_dropped: int = Field(description="Events dropped by a full input queue")
    queued: int = Field(description="Events waiting in the input queue")
    events_per_s: float | None = Field(description="Recent rate; null until a second poll")
    results_per_s: float | None
    resumable_until: float | None = Field(description="Unix time a detached session expires")


class StreamList(BaseModel):
    object: Literal["list"] = "list"
    total: int = Field(description="Live plus resumable sessions on the server")
    data: list[StreamItem]
