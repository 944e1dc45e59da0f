"""Stream models: detectors flag a shift and not noise; the OS-ELM learns from labels; every
model's state survives a JSON round trip and continues identically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from augury.stream.models import AdaptiveThreshold, OnlineELM, StreamModel
from augury.stream.registry import ModelNotFound, ModelOptions, ModelRegistry


def normal_then_fault(n: int = 300, fault_at: int = 250, d: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d)) * 0.1 + 1.0
    X[fault_at:] += 1.5  # a step in every feature
    return X


@pytest.mark.parametrize("name", ["zscore", "elm-autoencoder"])
def test_detector_flags_fault_not_noise(name: str) -> None:
    model = ModelRegistry().create(name, 6, ModelOptions(threshold_k=6, n_hidden=32))
    outs = [model.step(x, None) for x in normal_then_fault()]
    scored = [o for o in outs[:250] if o.anomaly is not None]
    assert len(scored) > 150
    assert sum(bool(o.anomaly) for o in scored) <= 2
    assert all(o.anomaly for o in outs[250:260])
    assert all(o.threshold is not None and o.score is not None for o in outs[250:])


def test_oselm_learns_labels_online() -> None:
    rng = np.random.default_rng(1)
    model = ModelRegistry().create("oselm", 3, ModelOptions(warmup=20, forgetting=1.0))
    errors = []
    for _ in range(400):
        x = rng.normal(size=3)
        y = float(2 * x[0] - x[1] + 0.5)
        out = model.step(x, y)
        if out.prediction is not None:
            errors.append(abs(out.prediction[0] - y))
    assert np.mean(errors[-100:]) < 0.15  # |y| is about 2 on average


def test_oselm_classifies_declared_classes() -> None:
    rng = np.random.default_rng(2)
    model = ModelRegistry().create("oselm", 2, ModelOptions(warmup=10, classes=(0.0, 1.0)))
    hits = []
    for _ in range(300):
        x = rng.normal(size=2)
        y = float(x[0] > 0)
        out = model.step(x, y)
        if out.label is not None:
            hits.append(out.label == y)
    assert np.mean(hits[-100:]) > 0.9


@pytest.mark.parametrize("name", ["zscore", "elm-autoencoder", "oselm"])
def test_state_round_trip_continues_identically(name: str) -> None:
    registry = ModelRegistry()
    X = normal_then_fault(120, 100)
    labels = [float(i % 2) if i % 3 == 0 else None for i in range(120)]
    a: StreamModel = registry.create(name, 6, ModelOptions(warmup=20))
    for x, y in zip(X[:60], labels[:60], strict=True):
        a.step(x, y)
    b: StreamModel = registry.create(name, 6, ModelOptions(warmup=20))
    b.load(json.loads(json.dumps(a.state())))
    for x, y in zip(X[60:], labels[60:], strict=True):
        assert a.step(x, y) == b.step(x, y)


def test_hidden_layer_is_shared() -> None:
    registry = ModelRegistry()
    assert registry.shared_layer(6, 16, 0) is registry.shared_layer(6, 16, 0)


def test_adaptive_threshold_is_mean_plus_k_std() -> None:
    threshold = AdaptiveThreshold(k=3.0, alpha=0.1, warmup=4)
    for s in (1.0, 2.0, 3.0, 4.0):
        threshold.update(s)
    assert threshold.value == pytest.approx(2.5 + 3.0 * np.std([1.0, 2.0, 3.0, 4.0]))


def test_trained_elm_folder_adapts(tmp_path: object) -> None:
    from pathlib import Path

    from augury.elm import ELMRegressor, save_model

    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4))
    model = ELMRegressor(n_hidden=32).fit(X, X @ [1.0, -1.0, 0.5, 0.0])
    save_model(model, Path(str(tmp_path)) / "vib", onnx=False)
    registry = ModelRegistry(Path(str(tmp_path)))
    assert "vib" in registry.names()
    session = registry.create("vib", 4, ModelOptions())
    assert isinstance(session, OnlineELM)
    out = session.step(X[0], None)
    assert out.prediction == pytest.approx([float(model.predict(X[:1])[0])], abs=1e-4)
    with pytest.raises(ValueError, match="takes 4 features"):
        registry.create("vib", 5, ModelOptions())
    with pytest.raises(ModelNotFound, match="available: zscore"):
        registry.create("../etc", 4, ModelOptions())


def test_zscore_step_many_equals_each_detector_alone() -> None:
    """The scheduler scores many sessions' windows in one call: every row's output and update
    must be exactly those of its detector stepping alone, whatever phase each detector is in
    (warming up, scoring, or judging a fault and not learning from it)."""
    from augury.stream.models import ZScoreDetector

    rng = np.random.default_rng(1)
    alone = [ZScoreDetector(k=4.0, warmup=w) for w in (3, 10, 40)]
    together = [ZScoreDetector(k=4.0, warmup=w) for w in (3, 10, 40)]
    seen = set()
    for t in range(60):
        X = rng.normal(size=(3, 5)) * 0.1 + 1.0
        if t in (30, 31):
            X[0] += 5.0  # a fault for the first detector only: judged, not learned
        expected = [m.step(x, None) for m, x in zip(alone, X, strict=True)]
        assert ZScoreDetector.step_many(together, X) == expected
        for a, b in zip(alone, together, strict=True):
            assert a.state() == b.state()
        seen |= {(o.score is None, bool(o.anomaly), o.learned) for o in expected}
    # every phase happened: warming up, scored and learned, flagged and not learned
    assert {(True, False, True), (False, False, True), (False, True, False)} <= seen
