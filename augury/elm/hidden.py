"""The random, fixed hidden layer of an ELM, with the input standardization it carries.

A hidden layer maps raw inputs X (n, d) to hidden features H (n, L):

    Xs = (X - mean) / scale                      # (n, d) standardized inputs
    Z  = Xs @ weight + bias                      # (n, L) pre-activations
    H  = activation(Z)                           # (n, L)

For rbf units (centres c_j, width gamma) the same two products give the squared distance,
because -gamma * ||x - c||^2 = x @ (2 gamma c) - gamma ||c||^2 - gamma ||x||^2:

    weight = 2 gamma C^T, bias = -gamma ||c_j||^2, Z -= gamma * ||Xs||^2 (per row)

Units are drawn from independent streams for weights and biases, one unit (row) at a time,
so widening a layer keeps its first units (exactly for uniform, he and rbf; xavier's bound
shrinks with the width, so there the first units are rescaled copies).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from augury.elm.activations import get_activation

F64 = NDArray[np.float64]
INITS = ("uniform", "xavier", "he")


@dataclass(frozen=True)
class Standardizer:
    """Per-feature mean and spread, mergeable across shards (Chan et al. parallel moments)."""

    count: float
    """Number of rows seen."""
    mean: F64
    """(d,) running mean."""
    m2: F64
    """(d,) running sum of squared deviations from the mean."""

    @classmethod
    def fit(cls, X: F64) -> Standardizer:
        """Moments of the rows of X (n, d)."""
        mean = X.mean(axis=0)
        return cls(float(X.shape[0]), mean, ((X - mean) ** 2).sum(axis=0))

    def merge(self, other: Standardizer) -> Standardizer:
        """Moments of the union of both row sets."""
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return Standardizer(n, mean, m2)

    @property
    def scale(self) -> F64:
        """(d,) population standard deviation; constant features get 1 so they map to 0."""
        std = np.sqrt(self.m2 / max(self.count, 1.0))
        return np.where(std > 1e-12 * np.maximum(np.abs(self.mean), 1.0), std, 1.0)


@dataclass(frozen=True)
class HiddenLayer:
    """Fixed random features: standardization, one affine map and an activation."""

    mean: F64
    """(d,) input mean subtracted before the weights."""
    scale: F64
    """(d,) input scale divided out before the weights."""
    weight: F64
    """(d, L) input weights."""
    bias: F64
    """(L,) biases."""
    activation: str
    """Name in `augury.elm.activations.ACTIVATIONS`."""
    gamma: float = 0.0
    """rbf width: the ||Xs||^2 coefficient. Unused (0) for other activations."""

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_hidden(self) -> int:
        return int(self.weight.shape[1])

    def transform(self, X: NDArray[Any]) -> F64:
        """Hidden features H (n, L) in float64 for training."""
        Xs = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale  # (n, d)
        Z = Xs @ self.weight  # (n, L)
        Z += self.bias
        if self.gamma:
            Z -= self.gamma * np.einsum("ij,ij->i", Xs, Xs)[:, None]
            np.minimum(Z, 0.0, out=Z)  # a squared distance is never negative
        return get_activation(self.activation).forward(Z)

    def select(self, units: NDArray[np.intp] | slice) -> HiddenLayer:
        """A layer of a subset of units (a prefix for model selection, survivors of pruning)."""
        return replace(self, weight=self.weight[:, units].copy(), bias=self.bias[units].copy())


def random_layer(
    n_hidden: int,
    activation: str,
    init: str,
    seed: int,
    standardizer: Standardizer,
) -> HiddenLayer:
    """Random projection units: weights and biases from `seed`.

    uniform: w, b ~ U(-1, 1) (Huang's original ELM).
    xavier:  w ~ U(-a, a), a = sqrt(6 / (d + L)).
    he:      w ~ N(0, 2 / d).
    For xavier and he, b ~ U(-s, s) with s = sqrt(d Var(w)), the spread of x . w for
    standardized x, so bends of the activation fall where the data is.
    """
    act = get_activation(activation)
    if act.distance_based:
        raise ValueError("rbf units are centred on data: use rbf_layer(), not random_layer()")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    d = standardizer.mean.shape[0]
    w_rng, b_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if init == "uniform":
        weight = w_rng.uniform(-1.0, 1.0, size=(n_hidden, d))  # (L, d): one unit per row
        bias = b_rng.uniform(-1.0, 1.0, size=n_hidden)
    elif init == "xavier":
        a = np.sqrt(6.0 / (d + n_hidden))
        weight = w_rng.uniform(-a, a, size=(n_hidden, d))
        bias = b_rng.uniform(-1.0, 1.0, size=n_hidden) * a * np.sqrt(d / 3.0)
    else:  # he
        weight = w_rng.normal(0.0, np.sqrt(2.0 / d), size=(n_hidden, d))
        bias = b_rng.uniform(-1.0, 1.0, size=n_hidden) * np.sqrt(2.0)
    return HiddenLayer(
        mean=standardizer.mean.copy(),
        scale=standardizer.scale,
        weight=np.ascontiguousarray(weight.T),  # (d, L)
        bias=bias,
        activation=activation,
    )


def rbf_layer(centers: F64, gamma: float, standardizer: Standardizer) -> HiddenLayer:
    """Gaussian units exp(-gamma ||Xs - c||^2) centred on standardized points `centers` (L, d)."""
    if gamma <= 0:
        raise ValueError(f"rbf gamma must be > 0, got {gamma}; try 1 / n_features")
    return HiddenLayer(
        mean=standardizer.mean.copy(),
        scale=standardizer.scale,
        weight=np.ascontiguousarray(2.0 * gamma * centers.T),  # (d, L)
        bias=-gamma * np.einsum("ij,ij->i", centers, centers),  # (L,)
        activation="rbf",
        gamma=float(gamma),
    )


def sample_centers(X: NDArray[Any], n_centers: int, seed: int, standardizer: Standardizer) -> F64:
    """`n_centers` standardized training rows (without replacement while rows last)."""
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    order = rng.permutation(n)
    if n_centers > n:  # more units than rows: reuse rows, still nested by prefix
        order = np.concatenate([order, rng.integers(0, n, size=n_centers - n)])
    rows = np.asarray(X, dtype=np.float64)[order[:n_centers]]
    return (rows - standardizer.mean) / standardizer.scale  # (L, d)


def build_layer(
    X: NDArray[Any],
    n_hidden: int,
    activation: str,
    init: str,
    seed: int,
    gamma: float | None,
    standardizer: Standardizer,
) -> HiddenLayer:
    """A hidden layer for data like X: random projections, or rbf units centred on rows of X."""
    act = get_activation(activation)
    if act.distance_based:
        d = standardizer.mean.shape[0]
        centers = sample_centers(X, n_hidden, seed, standardizer)
        return rbf_layer(centers, gamma if gamma is not None else 1.0 / d, standardizer)
    return random_layer(n_hidden, activation, init, seed, standardizer)
