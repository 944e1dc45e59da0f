"""Checkpoints: a session core rebuilt from JSON continues exactly; the disk store survives a
restart and expires."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from augury.stream.checkpoint import Checkpoint, CheckpointStore, token_digest, token_matches
from augury.stream.registry import ModelOptions, ModelRegistry
from augury.stream.session import SessionCore, SessionSpec
from augury.stream.windows import Event

SPEC = SessionSpec(
    model="elm-autoencoder",
    channels=("x", "y"),
    window_kind="count",
    window_size=16,
    window_stride=8,
    late_policy="reorder",
    reorder_bound=0.05,
    queue_size=8,
    overflow="block",
    features=("mean", "std", "bands"),
    n_bands=2,
    include_ids=True,
    model_options={"warmup": 5},
)


def core() -> SessionCore:
    model = ModelRegistry().create(SPEC.model, SPEC.n_features, ModelOptions(warmup=5))
    return SessionCore(SPEC, model, result_buffer=50)


def test_core_checkpoint_continues_exactly() -> None:
    rng = np.random.default_rng(0)
    evs = [Event(i, i * 0.01 + rng.uniform(0, 0.02), rng.normal(size=2)) for i in range(600)]
    whole = core().process(evs)
    a = core()
    first = a.process(evs[:311])
    b = core()
    b.load(json.loads(json.dumps(a.state())))
    assert first + b.process(evs[311:]) == whole
    assert b.replay(len(whole) - 3) == whole[-2:]


def test_replay_counts_results_that_left_the_ring() -> None:
    c = core()
    out = c.process([Event(i, i * 0.01, np.zeros(2)) for i in range(1000)])
    assert len(out) > 50
    assert c.replay(-1) == out[-50:] and c.counters.results_lost == len(out) - 50


def test_store_survives_restart_and_expires(tmp_path: Path) -> None:
    store = CheckpointStore(timeout_s=60, directory=tmp_path)
    saved = Checkpoint("abc", "tester", token_digest("tok"), SPEC.to_json(), {}, saved_at=1e12)
    store.save(saved)
    again = CheckpointStore(timeout_s=60, directory=tmp_path)
    loaded = again.get("abc")
    assert loaded is not None and loaded.core == {} and token_matches("tok", loaded.token_digest)
    assert not token_matches("tok2", loaded.token_digest)
    assert SessionSpec.from_json(loaded.spec) == SPEC
    assert again.expire(now=1e12 + 61) == 1 and not list(tmp_path.glob("*.json"))
