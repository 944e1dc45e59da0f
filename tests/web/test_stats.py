"""augury.server.stats: ring buffers, percentiles and rates, on a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from augury.llm.outputs import EngineStats
from augury.server.stats import RecentActivity, TimingWindow, percentile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine_stats(
    prompt: int = 0, generated: int = 0, queries: int = 0, hits: int = 0
) -> EngineStats:
    return EngineStats(
        running=1, waiting=0, kv_blocks_used=2, kv_blocks_total=8, block_size=16,
        prompt_tokens_total=prompt, generation_tokens_total=generated, steps_total=3,
        preemptions_total=0, last_step_ms=1.0, last_model_ms=1.0,
        prefix_cache_queries=queries, prefix_cache_hits=hits,
    )  # fmt: skip


@pytest.mark.parametrize("q", [0, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = sorted(np.random.default_rng(0).exponential(size=37).tolist())
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_window_is_bounded_and_only_counts_recent_values() -> None:
    window = TimingWindow(capacity=3)
    for t, v in enumerate([5.0, 1.0, 2.0, 3.0]):
        window.add(float(t), v)
    assert window.values(since=0) == [1.0, 2.0, 3.0]  # the oldest fell out
    assert window.values(since=2) == [2.0, 3.0]
    p = window.percentiles(since=10)
    assert (p.count, p.p50, p.p99) == (0, None, None)


def test_latencies_are_summarised_over_the_window() -> None:
    clock = Clock()
    recent = RecentActivity(window_s=60, clock=clock)
    recent.first_token("m", 9.0)  # falls out of the window below
    clock.now += 61
    for ttft in (0.1, 0.2, 0.3):
        recent.first_token("m", ttft)
        recent.inter_token("m", ttft / 10)
    recent.finished("m", 1.5)
    (a,) = recent.snapshot({"m": engine_stats()})
    assert a.ttft.count == 3 and a.ttft.p50 == pytest.approx(0.2)
    assert a.itl.p99 == pytest.approx(0.0298)
    assert (a.e2e.count, a.e2e.p90) == (1, 1.5)


def test_rates_come_from_counter_differences() -> None:
    clock = Clock()
    recent = RecentActivity(rate_window_s=10, clock=clock)
    (first,) = recent.snapshot({"m": engine_stats()})
    assert first.generation_tokens_per_s == 0 and first.prefix_cache_hit_rate is None
    for _ in range(4):
        recent.started("m")
    clock.now += 2
    (a,) = recent.snapshot({"m": engine_stats(prompt=100, generated=40, queries=4, hits=1)})
    assert a.prompt_tokens_per_s == pytest.approx(50)
    assert a.generation_tokens_per_s == pytest.approx(20)
    assert a.prefix_cache_hit_rate == pytest.approx(0.25)
    assert a.requests_per_s == pytest.approx(0.4)
    # Long after: the base is the last sample before the window, not a stale zero.
    clock.now += 100
    (b,) = recent.snapshot({"m": engine_stats(prompt=100, generated=140, queries=4, hits=1)})
    assert b.generation_tokens_per_s == pytest.approx(1.0)
    assert b.requests_per_s == 0 and b.prefix_cache_hit_rate is None


def test_snapshot_lists_models_by_name() -> None:
    recent = RecentActivity()
    names = [a.model for a in recent.snapshot({"b": engine_stats(), "a": engine_stats()})]
    assert names == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"window_s": 0}, "window_s"), ({"rate_window_s": -1}, "rate_window_s"),
     ({"capacity": 0}, "capacity")],
)  # fmt: skip
def test_bad_settings_name_the_value(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RecentActivity(**kwargs)  # type: ignore[arg-type]
