"""The serving path: two matrix products and an activation, in float32, with no allocations
for a single row.

Training keeps float64 weights; `FastPredictor` freezes them into the dtype it serves in and,
when it is numerically safe, folds the input standardization into the first layer:

    (x - m) / s @ W + b  =  x @ (W / s[:, None]) + (b - (m / s) @ W)

so a prediction is `x @ W' + b'`, activation, `@ beta + c`. Folding is skipped for rbf units
(they need ||(x - m) / s||^2) and for features whose mean is huge relative to their spread,
where float32 cancellation would eat the signal; those use an explicit subtract and multiply.

The single-row path writes into buffers owned by the thread that built the predictor; other
threads take the allocating path, so sharing a predictor across threads stays correct.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from augury.elm.activations import Activation, get_activation
from augury.elm.hidden import HiddenLayer

# Fold the standardization only while |mean / scale| stays small: the folded bias then has
# no large terms that cancel against x @ W' in float32.
_MAX_FOLDED_OFFSET = 1e2
# Batches up to this many rows reuse one hidden-activation buffer (L * 4 bytes per row).
_MAX_BUFFER_ROWS = 8192


@dataclass(frozen=True)
class FrozenWeights:
    """Everything the serving graph needs, in the serving dtype (also what ONNX export writes)."""

    shift: NDArray[np.float64] | None
    """(d,) subtracted from x before `weight`, or None when folded (float64: batches in
    float64 are standardized before the cast, keeping digits that float32 would drop)."""
    inv_scale: NDArray[np.float64] | None
    """(d,) multiplied into x after `shift`, or None when folded."""
    weight: NDArray[Any]
    """(d, L) first-layer weights (standardization folded in when shift is None)."""
    bias: NDArray[Any]
    """(L,) first-layer bias."""
    gamma: float
    """rbf: coefficient of ||x_std||^2 subtracted from the pre-activation; 0 otherwise."""
    activation: str
    """Activation name."""
    beta: NDArray[Any]
    """(L, k) output weights."""
    intercept: NDArray[Any]
    """(k,) output bias."""


def freeze(
    hidden: HiddenLayer, beta: NDArray[np.float64], intercept: NDArray[np.float64], dtype: Any
) -> FrozenWeights:
    """Cast a trained model to the serving dtype, folding the standardization where safe."""
    foldable = not hidden.gamma and float(np.max(np.abs(hidden.mean / hidden.scale))) <= (
        _MAX_FOLDED_OFFSET
    )
    if foldable:
        weight = hidden.weight / hidden.scale[:, None]  # (d, L)
        bias = hidden.bias - (hidden.mean / hidden.scale) @ hidden.weight  # (L,)
        shift = inv_scale = None
    else:
        weight, bias = hidden.weight, hidden.bias
        shift, inv_scale = hidden.mean.copy(), 1.0 / hidden.scale
    return FrozenWeights(
        shift=shift,
        inv_scale=inv_scale,
        weight=np.ascontiguousarray(weight, dtype=dtype),
        bias=bias.astype(dtype),
        gamma=hidden.gamma,
        activation=hidden.activation,
        beta=np.ascontiguousarray(beta, dtype=dtype),
        intercept=intercept.astype(dtype),
    )


class FastPredictor:
    """Output scores (n, k) of a frozen ELM: `scores(X)` for batches, `row_scores(x)` for one."""

    def __init__(self, frozen: FrozenWeights) -> None:
        self.frozen = frozen
        self.dtype = frozen.weight.dtype
        self.n_features, self.n_hidden = (int(s) for s in frozen.weight.shape)
        self.n_outputs = int(frozen.beta.shape[1])
        self._act: Activation = get_activation(frozen.activation)
        self._owner = threading.get_ident()
        self._x1 = np.empty((1, self.n_features), self.dtype)  # standardized row (rbf/unfolded)
        self._z1 = np.empty((1, self.n_hidden), self.dtype)  # hidden activations
        self._s1 = np.empty((1, self.n_outputs), self.dtype)  # output scores
        self._zb = np.empty((0, self.n_hidden), self.dtype)  # batch hidden activations

    def check(self, X: NDArray[Any]) -> NDArray[Any]:
        """X as a 2-D float array with the right width; ValueError otherwise."""
        X = np.asarray(X)
        if X.dtype.kind != "f":
            try:
                X = X.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"input must be numeric, got dtype {X.dtype}") from None
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"expected input of shape (n, {self.n_features}), got {X.shape}; pass the "
                "same feature columns, in the same order, as in training"
            )
        return X

    def scores(self, X: NDArray[Any]) -> NDArray[Any]:
        """Output scores (n, k) for a batch; validates shape and finiteness."""
        X = self.check(X)
        if not np.all(np.isfinite(X)):
            rows = np.flatnonzero(~np.all(np.isfinite(X), axis=1))[:5].tolist()
            raise ValueError(f"input rows {rows} contain NaN or infinity; impute them first")
        f = self.frozen
        if f.shift is not None and f.inv_scale is not None:
            X = (X - f.shift) * f.inv_scale  # (n, d), in float64
        X = X.astype(self.dtype, copy=False)
        Z = np.dot(X, f.weight, out=self._hidden_buffer(X.shape[0]))  # (n, L)
        Z += f.bias
        if f.gamma:
            Z -= f.gamma * np.einsum("ij,ij->i", X, X)[:, None]
            np.minimum(Z, 0.0, out=Z)
        self._act.forward(Z)
        S: NDArray[Any] = Z @ f.beta  # (n, k)
        S += f.intercept
        return S

    def _hidden_buffer(self, n: int) -> NDArray[Any]:
        """An (n, L) scratch array: a view of a reused buffer on the owning thread (fresh
        multi-megabyte arrays cost page faults on every batch), else a new array."""
        if n > _MAX_BUFFER_ROWS or threading.get_ident() != self._owner:
            return np.empty((n, self.n_hidden), self.dtype)
        if self._zb.shape[0] < n:
            self._zb = np.empty((n, self.n_hidden), self.dtype)
        return self._zb[:n]

    def row_scores(self, x: NDArray[Any]) -> NDArray[Any]:
        """Scores (1, k) of one row x (1, d) already in the serving dtype.

        Returns an internal buffer when called from the owning thread: read it before the
        next call. This is the latency path, so it checks only what the math cannot.
        """
        if threading.get_ident() != self._owner:
            return self.scores(x)
        flat = x.reshape(-1)
        if not math.isfinite(flat.dot(flat)):  # one reduction catches NaN and infinity
            raise ValueError("input row contains NaN or infinity; impute it first")
        f = self.frozen
        if f.shift is not None and f.inv_scale is not None:
            x = np.subtract(x, f.shift, out=self._x1)
            np.multiply(x, f.inv_scale, out=x)
        z = np.dot(x, f.weight, out=self._z1)
        np.add(z, f.bias, out=z)
        if f.gamma:
            xr = x.reshape(-1)
            np.subtract(z, f.gamma * float(xr.dot(xr)), out=z)
            np.minimum(z, 0.0, out=z)
        self._act.forward(z)
        s = np.dot(z, f.beta, out=self._s1)
        np.add(s, f.intercept, out=s)
        return s

    def is_row(self, X: Any) -> bool:
        """True when X can take the single-row path as is (no conversion needed)."""
        return (
            type(X) is np.ndarray
            and X.dtype == self.dtype
            and X.shape == self._x1.shape
            and X.flags.c_contiguous
        )
