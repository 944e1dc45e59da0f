"""The load board, summed engine stats, and the per-replica Prometheus gauges."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest

from augury.llm.outputs import EngineStats, StepTiming
from augury.scale.load import LoadBoard, ReplicaLoad, sum_stats
from augury.scale.observe import ReplicaCollector


def stats(running: int, waiting: int, used: int, step_ms: float) -> EngineStats:
    return EngineStats(
        running=running, waiting=waiting, kv_blocks_used=used, kv_blocks_total=100,
        block_size=16, prompt_tokens_total=10 * running, generation_tokens_total=5,
        steps_total=7, preemptions_total=1, last_step_ms=step_ms, last_model_ms=step_ms / 2,
        last_timing=StepTiming(model_ms=step_ms), prefix_cache_queries=4, prefix_cache_hits=2,
    )  # fmt: skip


def load(replica: str, deployment: str = "llm", engine: EngineStats | None = None) -> ReplicaLoad:
    return ReplicaLoad(deployment, replica, f"SERVE_REPLICA::app#{deployment}#{replica}", 2, 9,
                       engine)  # fmt: skip


def test_board_keeps_the_latest_report_per_replica_sorted() -> None:
    board = LoadBoard(ttl_s=60)
    board.report(load("b"))
    board.report(load("a", "model-x"))
    board.report(load("a"))
    board.report(ReplicaLoad("llm", "a", "n", 5, 11))
    got = board.snapshot()
    expected = [("llm", "a"), ("llm", "b"), ("model-x", "a")]
    assert [(x.deployment, x.replica) for x in got] == expected
    assert got[0].ongoing == 5 and got[0].requests_total == 11
    assert all(x.reported_at > 0 for x in got)
    board.forget("llm", "b")
    assert [x.replica for x in board.snapshot()] == ["a", "a"]


def test_board_drops_replicas_that_stopped_reporting() -> None:
    board = LoadBoard(ttl_s=0.05)
    board.report(load("dead"))
    time.sleep(0.1)
    board.report(load("alive"))
    assert [x.replica for x in board.snapshot()] == ["alive"]


def test_sum_stats_adds_counts_and_takes_the_slowest_step() -> None:
    total = sum_stats([stats(2, 1, 10, 30.0), stats(3, 0, 50, 20.0)])
    assert total is not None
    assert (total.running, total.waiting, total.kv_blocks_used, total.kv_blocks_total) == (
        5, 1, 60, 200,
    )  # fmt: skip
    assert total.kv_usage == 0.3 and total.prompt_tokens_total == 50
    assert total.last_step_ms == 30.0 and total.last_timing.model_ms == 30.0
    assert total.prefix_cache_hits == 4 and total.block_size == 16
    assert sum_stats([]) is None


def test_collector_exports_one_series_per_replica() -> None:
    registry = CollectorRegistry()
    loads = [load("r1", engine=stats(2, 1, 25, 1.0)), load("r2", engine=stats(0, 0, 0, 1.0)),
             load("m1", "model-digits")]  # fmt: skip
    registry.register(ReplicaCollector(lambda: loads))
    text = generate_latest(registry).decode()
    assert 'augury_replicas{deployment="llm"} 2.0' in text
    assert 'augury_replicas{deployment="model-digits"} 1.0' in text
    assert 'augury_replica_requests_running{deployment="llm",replica="r1"} 2.0' in text
    assert 'augury_replica_kv_cache_usage_ratio{deployment="llm",replica="r1"} 0.25' in text
    assert 'augury_replica_ongoing_requests{deployment="model-digits",replica="m1"} 2.0' in text
    assert 'augury_replica_requests_total{deployment="model-digits",replica="m1"} 9.0' in text
    assert 'augury_replica_requests_running{deployment="model-digits"' not in text
