"""Per-replica load: each replica reports what it is doing to one small board actor, and the
ingress reads the board to show per-replica figures and to sum a deployment's engine stats.

Reports are pushed (fire and forget) every `report_interval_s`; an entry not refreshed within
`ttl_s` belongs to a replica that died or was scaled down and is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from augury.llm.outputs import EngineStats

BOARD_NAMESPACE = "augury"


def board_name(app_name: str) -> str:
    """The named actor holding the load reports of one Serve application."""
    return f"augury-load-{app_name}"


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica's latest report."""

    deployment: str
    """The Serve deployment (one per LLM engine or predictive model)."""
    replica: str
    """The replica's Serve id (stable for its lifetime)."""
    actor_name: str
    """The Ray actor's name (namespace 'serve'); what `ray.kill` needs."""
    ongoing: int
    """Calls the replica is serving now (streams for an LLM, batches for a model)."""
    requests_total: int
    """Calls it has started since it came up."""
    engine: EngineStats | None = None
    """LLM replicas: the engine's own figures (running, waiting, KV cache...)."""
    reported_at: float = 0.0
    """time.time() of the report (set by the board)."""


class LoadBoard:
    """The latest report of every live replica (run as a named Ray actor, num_cpus=0)."""

    def __init__(self, ttl_s: float = 3.0) -> None:
        self._ttl_s = ttl_s
        self._loads: dict[tuple[str, str], ReplicaLoad] = {}

    def report(self, load: ReplicaLoad) -> None:
        self._loads[load.deployment, load.replica] = replace(load, reported_at=time.time())

    def forget(self, deployment: str, replica: str) -> None:
        """Drop a replica that shut down cleanly."""
        self._loads.pop((deployment, replica), None)

    def snapshot(self) -> list[ReplicaLoad]:
        """Reports fresher than the TTL, by deployment then replica id."""
        cutoff = time.time() - self._ttl_s
        self._loads = {k: v for k, v in self._loads.items() if v.reported_at >= cutoff}
        return [self._loads[key] for key in sorted(self._loads)]


def sum_stats(stats: Iterable[EngineStats]) -> EngineStats | None:
    """One deployment's figures from its replicas': counts and totals add up, step times
    take the slowest replica. None when there is no replica."""
    items = list(stats)
    if not items:
        return None
    return EngineStats(
        running=sum(s.running for s in items),
        waiting=sum(s.waiting for s in items),
        kv_blocks_used=sum(s.kv_blocks_used for s in items),
        kv_blocks_total=sum(s.kv_blocks_total for s in items),
        block_size=items[0].block_size,
        prompt_tokens_total=sum(s.prompt_tokens_total for s in items),
        generation_tokens_total=sum(s.generation_tokens_total for s in items),
        steps_total=sum(s.steps_total for s in items),
        preemptions_total=sum(s.preemptions_total for s in items),
        last_step_ms=max(s.last_step_ms for s in items),
        last_model_ms=max(s.last_model_ms for s in items),
        last_timing=max((s.last_timing for s in items), key=lambda t: t.total_ms),
        spec_proposed_tokens=sum(s.spec_proposed_tokens for s in items),
        spec_accepted_tokens=sum(s.spec_accepted_tokens for s in items),
        prefix_cache_queries=sum(s.prefix_cache_queries for s in items),
        prefix_cache_hits=sum(s.prefix_cache_hits for s in items),
    )


def ensure_board(app_name: str, ttl_s: float = 3.0) -> Any:
    """The load board actor of `app_name`, created (detached, no CPU) if it does not exist."""
    import ray

    actor = ray.remote(LoadBoard).options(
        name=board_name(app_name),
        namespace=BOARD_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
    )
    return actor.remote(ttl_s)
