from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from augury.elm import ELMConfig, Standardizer
from augury.elm.hidden import build_layer
from augury.elm.selection import _folds, select_hyperparameters
from tests.elm.conftest import Split

CONFIG = ELMConfig(activation="tanh", seed=3)


def _features(X: np.ndarray, width: int) -> np.ndarray:
    c = CONFIG
    return build_layer(
        X, width, c.activation, c.init, c.seed, c.gamma, Standardizer.fit(X)
    ).transform(X)


def _brute_force_loo(H: np.ndarray, Y: np.ndarray, alpha: float) -> np.ndarray:
    """n refits, each leaving one row out (the reference for the PRESS shortcut)."""
    preds = np.empty_like(Y)
    for i in range(len(Y)):
        keep = np.arange(len(Y)) != i
        preds[i] = Ridge(alpha=alpha, solver="svd").fit(H[keep], Y[keep]).predict(H[i : i + 1])[0]
    return preds


def test_press_equals_brute_force_leave_one_out(diabetes: Split) -> None:
    X, _, y, _ = diabetes
    X, y = X[:60], y[:60]
    result = select_hyperparameters(X, y, "regression", CONFIG, (10, 30), (0.1, 3.0), cv="loo")
    Y = ((y - y.mean()) / y.std())[:, None]
    table = {(w, a): s for w, a, s in result.table}
    for width in (10, 30):
        H = _features(X, width)
        for alpha in (0.1, 3.0):
            mse = np.mean((_brute_force_loo(H, Y, alpha) - Y) ** 2)
            assert table[(width, alpha)] == pytest.approx(-mse, rel=1e-8)


def test_loo_accuracy_equals_brute_force(cancer: Split) -> None:
    X, _, y, _ = cancer
    X, y = X[:50], y[:50]
    result = select_hyperparameters(X, y, "classification", CONFIG, (20,), (0.5,), cv="loo")
    T = np.eye(2)[y]
    preds = _brute_force_loo(_features(X, 20), T, 0.5)
    assert result.score == pytest.approx(np.mean(preds.argmax(axis=1) == y))


def test_kfold_equals_refitting_each_fold(diabetes: Split) -> None:
    X, _, y, _ = diabetes
    result = select_hyperparameters(X, y, "regression", CONFIG, (25,), (1.0,), cv=4)
    Y = ((y - y.mean()) / y.std())[:, None]
    H = _features(X, 25)
    folds = _folds(len(y), None, 4, CONFIG.seed)
    assert [len(f) for f in folds] == [len(t) for _, t in KFold(4).split(X)]
    sq = 0.0
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        pred = (
            Ridge(alpha=1.0, solver="svd").fit(H[train], Y[train]).predict(H[test]).reshape(-1, 1)
        )
        sq += ((pred - Y[test]) ** 2).sum()
    assert result.score == pytest.approx(-sq / len(y), rel=1e-8)


def test_selection_picks_the_best_grid_point_and_applies_it(digits: Split) -> None:
    X, Xt, y, yt = digits
    result = select_hyperparameters(X, y, "classification", CONFIG, (32, 256), (1e-3, 1.0, 1e3), 3)
    assert result.method == "3-fold" and len(result.table) == 6
    assert result.score == max(s for _, _, s in result.table)
    assert result.n_hidden == 256  # 32 units cannot fit ten digit classes as well
    config = result.apply(CONFIG)
    from augury.elm import ELMClassifier

    assert ELMClassifier(config).fit(X, y).score(Xt, yt) > 0.95


def test_selection_rejects_bad_arguments(cancer: Split) -> None:
    X, _, y, _ = cancer
    with pytest.raises(ValueError, match="cv must be"):
        select_hyperparameters(X, y, "classification", cv=1)
    with pytest.raises(ValueError, match="task must be"):
        select_hyperparameters(X, y, "ranking")
    with pytest.raises(ValueError, match="alpha_grid"):
        select_hyperparameters(X, y, "classification", alpha_grid=(0.0,))


def test_mse_scoring_for_classification_equals_one_hot_brute_force(cancer: Split) -> None:
    X, _, y, _ = cancer
    X, y = X[:50], y[:50]
    result = select_hyperparameters(X, y, "classification", CONFIG, (20,), (0.5,), "loo", "mse")
    T = np.eye(2)[y]
    preds = _brute_force_loo(_features(X, 20), T, 0.5)
    assert result.score == pytest.approx(-np.mean((preds - T) ** 2), rel=1e-8)
    with pytest.raises(ValueError, match="scoring must be"):
        select_hyperparameters(X, y.astype(float), "regression", scoring="accuracy")
