from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax as scipy_softmax

from augury.elm.calibration import cross_entropy, fit_temperature, holdout_rows, softmax


def test_softmax_matches_scipy(rng: np.random.Generator) -> None:
    s = rng.normal(0, 30, size=(40, 5))
    np.testing.assert_allclose(softmax(s, 0.3), scipy_softmax(s / 0.3, axis=1), rtol=1e-12)


def test_fitted_temperature_recovers_the_generating_one(rng: np.random.Generator) -> None:
    scores = rng.normal(0, 1, size=(20000, 4))
    true_tau = 0.25
    p = scipy_softmax(scores / true_tau, axis=1)
    labels = (p.cumsum(axis=1) > rng.uniform(size=(20000, 1))).argmax(axis=1)
    onehot = np.eye(4)[labels]
    tau = fit_temperature(scores, onehot)
    assert tau == pytest.approx(true_tau, rel=0.05)
    assert cross_entropy(scores, onehot, tau) < cross_entropy(scores, onehot, 1.0)


def test_holdout_is_stratified_and_skips_tiny_data() -> None:
    labels = np.array([0] * 900 + [1] * 100)
    rows = holdout_rows(labels, 0.1, seed=0)
    assert rows is not None
    assert np.sum(labels[rows] == 1) == 10 and np.sum(labels[rows] == 0) == 90
    assert holdout_rows(np.array([0, 1] * 20), 0.1, seed=0) is None


def test_separable_holdout_keeps_a_finite_temperature(rng: np.random.Generator) -> None:
    """Every row right: without Platt's shrinkage the optimum is tau -> 0 (saturated 0/1)."""
    labels = rng.integers(0, 2, size=40)
    scores = np.eye(2)[labels] * 0.8 + 0.1 + rng.normal(0, 0.05, size=(40, 2))
    tau = fit_temperature(scores, np.eye(2)[labels])
    p = softmax(scores, tau)
    assert 0.01 < tau < 1.0
    assert p.max() < 1.0 - 1e-6  # still a ranking to draw PR and ROC curves from
