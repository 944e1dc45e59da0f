"""Softmax with a temperature fitted on held-out data.

Ridge scores for one-hot targets live roughly in [0, 1], so softmax(scores) is far too flat.
The temperature tau minimises the held-out cross-entropy of softmax(scores / tau); a single
scalar cannot change the argmax, only how confident the probabilities are. As in Platt
scaling, the targets are shrunk by eps = 1 / (n + 2) towards the other classes: when every
held-out row is classified right (common with small sets) the plain optimum is tau -> 0,
probabilities of exactly 0 and 1, and no ranking left for PR or ROC curves.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar

F64 = NDArray[np.float64]
_LOG_TAU_BOUNDS = (-9.0, 5.0)  # tau in [1.2e-4, 148]


def softmax(scores: NDArray[np.floating], temperature: float = 1.0) -> NDArray[np.floating]:
    """Row-wise softmax of scores / temperature, computed stably; (n, k) -> (n, k)."""
    z: NDArray[np.floating] = scores / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def cross_entropy(scores: F64, targets: F64, temperature: float) -> float:
    """Mean cross-entropy of softmax(scores / temperature) against target distributions."""
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(targets * log_p).sum(axis=1).mean())


def fit_temperature(scores: F64, targets: F64) -> float:
    """The tau minimising held-out cross-entropy; `targets` are one-hot or soft rows (n, k)."""
    n, k = targets.shape
    if n == 0:
        return 1.0
    eps = 1.0 / (n + 2)
    smoothed = (1.0 - eps) * targets + eps * (1.0 - targets) / max(k - 1, 1)
    result = minimize_scalar(
        lambda log_tau: cross_entropy(scores, smoothed, float(np.exp(log_tau))),
        bounds=_LOG_TAU_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


MIN_HOLDOUT_ROWS = 10


def holdout_rows(labels: NDArray[np.intp], fraction: float, seed: int) -> NDArray[np.intp] | None:
    """Sorted row indices of a stratified held-out share, or None when either side would be
    smaller than MIN_HOLDOUT_ROWS (the caller then calibrates in-sample)."""
    n = labels.shape[0]
    n_val = round(n * fraction)
    if n_val < MIN_HOLDOUT_ROWS or n - n_val < MIN_HOLDOUT_ROWS:
        return None
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take = min(max(1, round(rows.shape[0] * fraction)), rows.shape[0] - 1)
        picked.append(rng.choice(rows, size=max(take, 0), replace=False))
    return np.sort(np.concatenate(picked))
