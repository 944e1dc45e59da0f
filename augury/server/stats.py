"""Recent activity for the dashboard: request timings in bounded ring buffers, summarised as
percentiles over a sliding window, and engine counters turned into per-second rates.

Prometheus histograms (metrics.py) answer "how has it been since start"; the dashboard asks
"how is it now", so the same observations also land here, capped in memory whatever the load.
Everything runs on the event loop (request timers and the stats handler), so nothing locks.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from augury.llm.outputs import EngineStats

Clock = Callable[[], float]


@dataclass(frozen=True)
class Percentiles:
    """Seconds; None when the window holds no observation."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, interpolating linearly between ranks."""
    if not ordered:
        raise ValueError("percentile of no values; check the count first")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class TimingWindow:
    """The last `capacity` observations with their times; statistics over the recent ones."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[tuple[float, float]] = deque(maxlen=capacity)

    def add(self, now: float, value: float) -> None:
        self._items.append((now, value))

    def values(self, since: float) -> list[float]:
        return [v for t, v in self._items if t >= since]

    def percentiles(self, since: float) -> Percentiles:
        ordered = sorted(self.values(since))
        if not ordered:
            return Percentiles(0, None, None, None)
        p50, p90, p99 = (percentile(ordered, q) for q in (50, 90, 99))
        return Percentiles(len(ordered), p50, p90, p99)


@dataclass
class _ModelTimings:
    arrivals: TimingWindow
    ttft: TimingWindow
    itl: TimingWindow
    e2e: TimingWindow


@dataclass(frozen=True)
class _Sample:
    time: float
    prompt_tokens: int
    generation_tokens: int
    prefix_queries: int
    prefix_hits: int


@dataclass(frozen=True)
class ModelActivity:
    """One model's engine figures and recent activity, as the dashboard shows them."""

    model: str
    stats: EngineStats
    requests_per_s: float
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    prefix_cache_hit_rate: float | None
    """Hits / queries of the rate window (None without queries there)."""
    ttft: Percentiles
    itl: Percentiles
    e2e: Percentiles


class RecentActivity:
    """Per model: request arrivals, TTFT, inter-token and end-to-end latencies (the last
    `capacity` of each), summarised over the last `window_s` seconds; token rates come from
    engine counters sampled on each snapshot, over the last `rate_window_s` seconds."""

    def __init__(
        self,
        window_s: float = 60.0,
        rate_window_s: float = 10.0,
        capacity: int = 4096,
        clock: Clock = time.monotonic,
    ) -> None:
        if window_s <= 0 or rate_window_s <= 0:
            raise ValueError(
                f"window_s and rate_window_s must be positive, got {window_s}, {rate_window_s}"
            )
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.window_s = window_s
        self.rate_window_s = rate_window_s
        self._capacity = capacity
        self._clock = clock
        self._timings: dict[str, _ModelTimings] = {}
        self._samples: dict[str, deque[_Sample]] = {}

    def _of(self, model: str) -> _ModelTimings:
        timings = self._timings.get(model)
        if timings is None:
            timings = _ModelTimings(*(TimingWindow(self._capacity) for _ in range(4)))
            self._timings[model] = timings
        return timings

    def started(self, model: str) -> None:
        self._of(model).arrivals.add(self._clock(), 1.0)

    def first_token(self, model: str, seconds: float) -> None:
        self._of(model).ttft.add(self._clock(), seconds)

    def inter_token(self, model: str, seconds: float) -> None:
        self._of(model).itl.add(self._clock(), seconds)

    def finished(self, model: str, seconds: float) -> None:
        self._of(model).e2e.add(self._clock(), seconds)

    def snapshot(self, engines: Mapping[str, EngineStats]) -> list[ModelActivity]:
        """The activity of each engine's model (given its current stats), sorted by name."""
        now = self._clock()
        since = now - self.window_s
        out = []
        for model in sorted(engines):
            stats = engines[model]
            timings = self._of(model)
            prompt_rate, gen_rate, hit_rate = self._rates(model, stats, now)
            arrivals = timings.arrivals.values(now - self.rate_window_s)
            out.append(
                ModelActivity(
                    model=model,
                    stats=stats,
                    requests_per_s=len(arrivals) / self.rate_window_s,
                    prompt_tokens_per_s=prompt_rate,
                    generation_tokens_per_s=gen_rate,
                    prefix_cache_hit_rate=hit_rate,
                    ttft=timings.ttft.percentiles(since),
                    itl=timings.itl.percentiles(since),
                    e2e=timings.e2e.percentiles(since),
                )
            )
        return out

    def _rates(
        self, model: str, stats: EngineStats, now: float
    ) -> tuple[float, float, float | None]:
        """Prompt tok/s, generated tok/s and prefix-cache hit rate between the oldest sample of
        the rate window (or, when that is this one, the one before it) and now."""
        samples = self._samples.setdefault(model, deque(maxlen=1024))
        current = _Sample(
            now,
            stats.prompt_tokens_total,
            stats.generation_tokens_total,
            stats.prefix_cache_queries,
            stats.prefix_cache_hits,
        )
        while len(samples) > 1 and samples[1].time < now - self.rate_window_s:
            samples.popleft()  # keep one sample older than the window as a fallback base
        base = next((s for s in samples if s.time >= now - self.rate_window_s), None)
        if base is None and samples:
            base = samples[-1]
        samples.append(current)
        if base is None or current.time <= base.time:
            return 0.0, 0.0, None
        seconds = current.time - base.time
        queries = current.prefix_queries - base.prefix_queries
        hits = current.prefix_hits - base.prefix_hits
        return (
            max(0, current.prompt_tokens - base.prompt_tokens) / seconds,
            max(0, current.generation_tokens - base.generation_tokens) / seconds,
            hits / queries if queries > 0 else None,
        )
