"""Choosing the number of hidden units and the ridge penalty by cross-validation.

Each width gets its own hidden layer (drawn exactly as `fit` would draw it), and every alpha
shares one eigendecomposition of that width's centred Gram matrix A = Hc^T Hc = V diag(e) V^T:

    beta(alpha) = V diag(1 / (e + alpha)) V^T Hc^T Tc

k-fold: the training Gram of each fold is the total minus the fold's own statistics.
Leave-one-out (PRESS): with Q = Hc V, the hat matrix of ridge with an unpenalised intercept
is 1/n + Q diag(1 / (e + alpha)) Q^T, and the leave-one-out residual of row i is
r_i / (1 - h_ii), so n refits cost one pass.

Classification is scored by accuracy (leave-one-out predictions are t_i - r_i / (1 - h_ii)),
regression by mean squared error on standardized targets (reported negated: higher is better).
The input standardization is computed once on all rows (it does not see the targets).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import KFold, StratifiedKFold

from augury.elm.base import F64, ELMConfig, check_features
from augury.elm.hidden import Standardizer, build_layer
from augury.elm.ridge import GramStats
from augury.elm.targets import ClassTargets

DEFAULT_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class SelectionResult:
    """Best grid point and the whole table of scores."""

    n_hidden: int
    """Chosen number of hidden units."""
    alpha: float
    """Chosen ridge penalty."""
    score: float
    """Its cross-validated score: accuracy, or minus the MSE of standardized targets."""
    method: str
    """"5-fold" or "leave-one-out"."""
    table: tuple[tuple[int, float, float], ...]
    """(n_hidden, alpha, score) for every grid point."""

    def apply(self, config: ELMConfig) -> ELMConfig:
        """`config` with the chosen width and penalty."""
        return replace(config, n_hidden=self.n_hidden, alpha=self.alpha)


def select_hyperparameters(
    X: Any,
    y: Any,
    task: str,
    config: ELMConfig | None = None,
    hidden_grid: tuple[int, ...] = (64, 128, 256, 512),
    alpha_grid: tuple[float, ...] = DEFAULT_ALPHAS,
    cv: int | str = 5,
    scoring: str | None = None,
) -> SelectionResult:
    """Score every (n_hidden, alpha) by k-fold (cv=int) or leave-one-out (cv="loo") CV.

    scoring: "accuracy" (classification default) or "mse" (regression default; for
    classification it is the Brier-like error of the scores against one-hot targets, which
    still ranks models when accuracy cannot, e.g. 3% fraud).
    """
    if task not in TASKS:
        raise ValueError(f"task must be classification or regression, got {task!r}")
    scoring = scoring or ("accuracy" if task == "classification" else "mse")
    if scoring not in ("accuracy", "mse") or (scoring == "accuracy" and task == "regression"):
        raise ValueError(f"scoring must be 'accuracy' (classification) or 'mse', got {scoring!r}")
    if not hidden_grid or min(hidden_grid) < 1 or not alpha_grid or min(alpha_grid) <= 0:
        raise ValueError("hidden_grid needs sizes >= 1 and alpha_grid values > 0")
    base = config or ELMConfig()
    A = check_features(X)
    T, labels = _targets(y, task, A.shape[0])
    folds: list[NDArray[np.intp]] = []
    if cv == "loo":
        method = "leave-one-out"
    elif isinstance(cv, int) and not isinstance(cv, bool) and 2 <= cv <= A.shape[0]:
        method = f"{cv}-fold"
        folds = _folds(A.shape[0], labels, cv, base.seed)
    else:
        raise ValueError(f"cv must be an integer >= 2 (folds) or 'loo', got {cv!r}")
    scaler = Standardizer.fit(A)
    alphas = sorted(set(alpha_grid), reverse=True)  # ties go to the smoother model
    scored = labels if scoring == "accuracy" else None  # labels to score by, or None for MSE
    scores: list[tuple[int, float, float]] = []
    for width in sorted(set(hidden_grid)):
        layer = build_layer(A, width, base.activation, base.init, base.seed, base.gamma, scaler)
        H = layer.transform(A)  # (n, L)
        if cv == "loo":
            per_alpha = _loo_scores(H, T, scored, alphas)
        else:
            per_alpha = _kfold_scores(H, T, scored, alphas, folds)
        scores.extend((width, alpha, s) for alpha, s in zip(alphas, per_alpha, strict=True))
    best = max(scores, key=lambda row: row[2])  # first maximum: smallest width, largest alpha
    return SelectionResult(best[0], best[1], best[2], method, tuple(scores))


def _targets(y: Any, task: str, n: int) -> tuple[F64, NDArray[np.intp] | None]:
    """(targets (n, k), class indices or None)."""
    values = np.asarray(y)
    if values.shape[0] != n:
        raise ValueError(f"y has {values.shape[0]} rows, X has {n}")
    if task == "classification":
        targets = ClassTargets.from_labels(values)
        return targets.encode(values), targets.indices(values)
    Y = np.asarray(values, dtype=np.float64).reshape(n, -1)
    if not np.all(np.isfinite(Y)):
        raise ValueError("targets contain NaN or infinity; drop or impute those rows")
    std = Y.std(axis=0)
    return (Y - Y.mean(axis=0)) / np.where(std > 0, std, 1.0), None


def _score(pred: F64, T: F64, labels: NDArray[np.intp] | None) -> float:
    if labels is not None:
        return float(np.mean(pred.argmax(axis=1) == labels))
    return -float(np.mean((pred - T) ** 2))


def _folds(
    n: int, labels: NDArray[np.intp] | None, folds: int, seed: int
) -> list[NDArray[np.intp]]:
    """Held-out rows of each fold (stratified when every class has enough rows)."""
    stratify = labels is not None and np.bincount(labels).min() >= folds
    splitter = (StratifiedKFold if stratify else KFold)(folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros((n, 1)), labels)]


def _kfold_scores(
    H: F64,
    T: F64,
    labels: NDArray[np.intp] | None,
    alphas: list[float],
    held: list[NDArray[np.intp]],
) -> list[float]:
    """Mean held-out score of each alpha over the folds."""
    fold_stats = [GramStats.from_batch(H[rows], T[rows]) for rows in held]
    total = fold_stats[0]
    for stats in fold_stats[1:]:
        total = total + stats
    summed = np.zeros(len(alphas))
    for rows, stats in zip(held, fold_stats, strict=True):
        A, B, h_mean, t_mean = (total - stats).centered()
        e, V = np.linalg.eigh(A)
        VtB = V.T @ B  # (L, k)
        P = (H[rows] - h_mean) @ V  # (n_fold, L): held-out rows in the eigenbasis
        fold_labels = None if labels is None else labels[rows]
        for j, alpha in enumerate(alphas):
            pred = P @ (VtB / (np.maximum(e, 0.0) + alpha)[:, None]) + t_mean
            summed[j] += _score(pred, T[rows], fold_labels) * rows.shape[0]
    return list(summed / H.shape[0])


def _loo_scores(
    H: F64, T: F64, labels: NDArray[np.intp] | None, alphas: list[float]
) -> list[float]:
    """Leave-one-out score of each alpha from the hat-matrix diagonal (PRESS)."""
    n = H.shape[0]
    t_mean = T.mean(axis=0)
    Hc = H - H.mean(axis=0)  # (n, L)
    e, V = np.linalg.eigh(Hc.T @ Hc)
    e = np.maximum(e, 0.0)
    Q = Hc @ V  # (n, L)
    Q2 = Q * Q
    QtT = Q.T @ (T - t_mean)  # (L, k)
    scores = []
    for alpha in alphas:
        d = 1.0 / (e + alpha)
        fitted = t_mean + Q @ (QtT * d[:, None])  # (n, k)
        leverage = 1.0 / n + Q2 @ d  # (n,) hat-matrix diagonal
        loo = T - (T - fitted) / np.maximum(1.0 - leverage, 1e-12)[:, None]
        scores.append(_score(loo, T, labels))
    return scores
