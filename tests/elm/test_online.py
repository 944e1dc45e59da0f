from __future__ import annotations

import numpy as np
import pytest

from augury.elm import Standardizer
from augury.elm.hidden import random_layer
from augury.elm.online import OnlineELMClassifier, OnlineELMRegressor, RecursiveLeastSquares
from tests.elm.conftest import Split


def _weighted_ridge_on_augmented(
    H: np.ndarray, T: np.ndarray, w: np.ndarray, penalty: float
) -> np.ndarray:
    """Reference by least squares: minimise sum w_i ||t_i - [h_i, 1] b||^2 + penalty ||b||^2."""
    H1 = np.hstack([H, np.ones((H.shape[0], 1))])
    rw = np.sqrt(w)[:, None]
    stacked = np.vstack([H1 * rw, np.sqrt(penalty) * np.eye(H1.shape[1])])
    target = np.vstack([T * rw, np.zeros((H1.shape[1], T.shape[1]))])
    return np.linalg.lstsq(stacked, target, rcond=None)[0]


@pytest.mark.parametrize("chunk", [7, 40, 150])  # Woodbury form (n <= L+1) and information form
def test_forgetting_factor_one_equals_batch_ridge(chunk: int, rng: np.random.Generator) -> None:
    H = np.tanh(rng.normal(size=(300, 30)))
    T = H @ rng.normal(size=(30, 2)) + 0.1 * rng.normal(size=(300, 2))
    rls = RecursiveLeastSquares(30, 2, alpha=0.5, forgetting=1.0)
    for start in range(0, 300, chunk):
        rls.update(H[start : start + chunk], T[start : start + chunk])
    expected = _weighted_ridge_on_augmented(H, T, np.ones(300), 0.5)
    np.testing.assert_allclose(rls.beta, expected, rtol=1e-7, atol=1e-9)


def test_forgetting_factor_weights_old_chunks_geometrically(rng: np.random.Generator) -> None:
    H = np.tanh(rng.normal(size=(120, 10)))
    T = rng.normal(size=(120, 1))
    mu, alpha = 0.9, 2.0
    rls = RecursiveLeastSquares(10, 1, alpha=alpha, forgetting=mu)
    chunks = np.array_split(np.arange(120), 6)
    for rows in chunks:
        rls.update(H[rows], T[rows])
    n_chunks = len(chunks)
    w = np.concatenate(
        [np.full(len(rows), mu ** (n_chunks - 1 - t)) for t, rows in enumerate(chunks)]
    )
    expected = _weighted_ridge_on_augmented(H, T, w, alpha * mu**n_chunks)
    np.testing.assert_allclose(rls.beta, expected, rtol=1e-7, atol=1e-9)


def test_online_regressor_tracks_drift_with_forgetting(rng: np.random.Generator) -> None:
    X = rng.normal(size=(2000, 3))
    layer = random_layer(40, "tanh", "xavier", 0, Standardizer.fit(X))
    y = np.where(np.arange(2000) < 1000, X[:, 0], -X[:, 0])  # the concept flips half way
    remember = OnlineELMRegressor(hidden=layer, forgetting=1.0)
    forget = OnlineELMRegressor(hidden=layer, forgetting=0.9)
    for rows in np.array_split(np.arange(2000), 40):
        remember.partial_fit(X[rows], y[rows])
        forget.partial_fit(X[rows], y[rows])
    X_new = rng.normal(size=(300, 3))
    assert forget.score(X_new, -X_new[:, 0]) > 0.9
    assert remember.score(X_new, -X_new[:, 0]) < 0.5


def test_online_classifier_matches_batch_accuracy(digits: Split) -> None:
    X, Xt, y, yt = digits
    model = OnlineELMClassifier(classes=np.arange(10), n_hidden=256, alpha=1.0)
    for rows in np.array_split(np.arange(len(X)), 10):
        model.partial_fit(X[rows], y[rows])
    assert model.score(Xt, yt) > 0.95
    np.testing.assert_allclose(model.predict_proba(Xt).sum(axis=1), 1.0, rtol=1e-5)
    assert model.temperature_ < 1.0


def test_online_rejects_bad_forgetting_and_unknown_labels(digits: Split) -> None:
    X, _, y, _ = digits
    with pytest.raises(ValueError, match="forgetting must be in"):
        OnlineELMRegressor(forgetting=1.5)
    model = OnlineELMClassifier(classes=[0, 1, 2], n_hidden=8)
    with pytest.raises(ValueError, match="not among the model's classes"):
        model.partial_fit(X[:50], y[:50])
