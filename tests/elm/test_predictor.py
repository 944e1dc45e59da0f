from __future__ import annotations

import numpy as np
import pytest

from augury.elm.hidden import Standardizer, random_layer
from augury.elm.predictor import FastPredictor, freeze


def _layer(X: np.ndarray, activation: str = "tanh"):  # type: ignore[no-untyped-def]
    return random_layer(64, activation, "xavier", 0, Standardizer.fit(X))


def test_folded_standardization_matches_the_training_transform(rng: np.random.Generator) -> None:
    X = rng.normal(5, 3, size=(100, 8))
    layer = _layer(X)
    beta, intercept = rng.normal(size=(64, 3)), rng.normal(size=3)
    frozen = freeze(layer, beta, intercept, np.float64)
    assert frozen.shift is None  # folded into the first layer
    expected = layer.transform(X) @ beta + intercept
    np.testing.assert_allclose(FastPredictor(frozen).scores(X), expected, rtol=1e-10)


def test_badly_scaled_features_are_not_folded(rng: np.random.Generator) -> None:
    """A feature whose mean is 1e6 standard deviations from zero would cancel catastrophically
    in float32 if folded; the predictor standardizes explicitly instead."""
    X = rng.normal(size=(200, 3))
    X[:, 0] = 1e6 + rng.normal(size=200)
    layer = _layer(X)
    beta, intercept = rng.normal(size=(64, 2)), rng.normal(size=2)
    frozen = freeze(layer, beta, intercept, np.float32)
    assert frozen.shift is not None
    expected = layer.transform(X) @ beta + intercept
    got = FastPredictor(frozen).scores(X)
    assert np.abs(got - expected).max() < 1e-3 * np.abs(expected).max()


@pytest.mark.parametrize("activation", ["relu", "rbf"])
def test_row_path_equals_batch_path_and_reuses_buffers(
    activation: str, rng: np.random.Generator
) -> None:
    X = rng.normal(size=(50, 6))
    scaler = Standardizer.fit(X)
    from augury.elm.hidden import build_layer

    layer = build_layer(X, 32, activation, "he", 0, None, scaler)
    predictor = FastPredictor(freeze(layer, rng.normal(size=(32, 4)), np.zeros(4), np.float32))
    batch = predictor.scores(X)
    first = predictor.row_scores(X[:1].astype(np.float32))
    assert predictor.row_scores(X[1:2].astype(np.float32)) is first  # same buffer
    for i in range(5):
        row = X[i : i + 1].astype(np.float32)
        np.testing.assert_allclose(
            predictor.row_scores(row), batch[i : i + 1], rtol=1e-5, atol=1e-5
        )


def test_is_row_accepts_only_ready_rows(rng: np.random.Generator) -> None:
    X = rng.normal(size=(10, 4))
    predictor = FastPredictor(freeze(_layer(X), np.ones((64, 2)), np.zeros(2), np.float32))
    assert predictor.is_row(X[:1].astype(np.float32))
    assert not predictor.is_row(X[:1])  # float64 goes through the converting path
    assert not predictor.is_row(X[:2].astype(np.float32))
    assert not predictor.is_row(np.asfortranarray(X[:1, :].astype(np.float32))[:, ::2])
