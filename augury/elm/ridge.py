"""Closed-form ridge regression for the output weights, with an unpenalized intercept.

For hidden features H (n, L), targets T (n, k), sample weights w and penalty alpha:

    minimise  sum_i w_i ||t_i - b - h_i beta||^2 + alpha ||beta||^2

Centering H and T by their weighted means removes the intercept b from the problem:

    primal (n >= L):  beta = (Hc^T W Hc + alpha I)^-1 Hc^T W Tc      Cholesky of an (L, L) matrix
    dual   (n <  L):  beta = Hw^T (Hw Hw^T + alpha I)^-1 Tw          Cholesky of an (n, n) matrix
                      with Hw = sqrt(W) Hc, Tw = sqrt(W) Tc
    intercept:        b = t_mean - h_mean @ beta

The primal form needs only the sums in `GramStats`, which add across chunks and machines:
this is what makes `partial_fit` and map-reduce training exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError, cho_factor, cho_solve

F64 = NDArray[np.float64]
SOLVERS = ("auto", "primal", "dual")


@dataclass(frozen=True)
class GramStats:
    """Additive sufficient statistics of a weighted ridge problem (the map-reduce state)."""

    weight: float
    """Sum of sample weights (the row count when unweighted)."""
    h_sum: F64
    """(L,) sum of w_i h_i."""
    t_sum: F64
    """(k,) sum of w_i t_i."""
    hth: F64
    """(L, L) sum of w_i h_i h_i^T."""
    htt: F64
    """(L, k) sum of w_i h_i t_i^T."""

    @classmethod
    def from_batch(cls, H: F64, T: F64, sample_weight: F64 | None = None) -> GramStats:
        """Statistics of one chunk: H (n, L), T (n, k)."""
        Hw = H if sample_weight is None else H * sample_weight[:, None]  # (n, L)
        weight = float(H.shape[0] if sample_weight is None else sample_weight.sum())
        t_sum = T.sum(axis=0) if sample_weight is None else sample_weight @ T
        return cls(weight, Hw.sum(axis=0), t_sum, Hw.T @ H, Hw.T @ T)

    def __add__(self, other: GramStats) -> GramStats:
        self._check_compatible(other)
        return GramStats(
            self.weight + other.weight,
            self.h_sum + other.h_sum,
            self.t_sum + other.t_sum,
            self.hth + other.hth,
            self.htt + other.htt,
        )

    def __sub__(self, other: GramStats) -> GramStats:
        """Statistics with a chunk removed (k-fold: all folds minus the held-out one)."""
        self._check_compatible(other)
        return GramStats(
            self.weight - other.weight,
            self.h_sum - other.h_sum,
            self.t_sum - other.t_sum,
            self.hth - other.hth,
            self.htt - other.htt,
        )

    def _check_compatible(self, other: GramStats) -> None:
        if self.htt.shape != other.htt.shape:
            raise ValueError(
                f"cannot combine statistics of shape {self.htt.shape} and {other.htt.shape}: "
                "shards must share the hidden layer (same seed, config and standardization) "
                "and the classes"
            )

    def select(self, units: NDArray[np.intp] | slice) -> GramStats:
        """Statistics restricted to a subset of hidden units."""
        return GramStats(
            self.weight,
            self.h_sum[units],
            self.t_sum,
            self.hth[units][:, units],
            self.htt[units],
        )

    def centered(self) -> tuple[F64, F64, F64, F64]:
        """(Hc^T W Hc (L, L), Hc^T W Tc (L, k), h_mean (L,), t_mean (k,))."""
        if self.weight <= 0:
            raise ValueError("no training rows: the statistics are empty")
        h_mean = self.h_sum / self.weight
        t_mean = self.t_sum / self.weight
        A = self.hth - self.weight * np.outer(h_mean, h_mean)
        B = self.htt - self.weight * np.outer(h_mean, t_mean)
        return A, B, h_mean, t_mean

    def solve(self, alpha: float) -> tuple[F64, F64]:
        """(beta (L, k), intercept (k,)) by Cholesky of Hc^T W Hc + alpha I."""
        A, B, h_mean, t_mean = self.centered()
        beta = cholesky_solve(A, B, alpha)
        return beta, t_mean - h_mean @ beta


def cholesky_solve(A: F64, B: F64, alpha: float) -> F64:
    """X = (A + alpha I)^-1 B for symmetric positive semi-definite A."""
    system = A + alpha * np.eye(A.shape[0])
    try:
        factor = cho_factor(system, lower=True, check_finite=False)
    except LinAlgError:
        raise ValueError(
            f"ridge system is not positive definite with alpha={alpha:g}; increase alpha "
            "(e.g. 10x) or use fewer hidden units"
        ) from None
    solution: F64 = cho_solve(factor, B, check_finite=False)
    if not np.all(np.isfinite(solution)):
        raise ValueError(f"ridge solution is not finite with alpha={alpha:g}; increase alpha")
    return solution


def resolve_solver(solver: str, n_rows: int, n_hidden: int) -> str:
    """'primal' or 'dual': auto picks the smaller of the two (L, L) and (n, n) systems."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if solver == "auto":
        return "dual" if n_rows < n_hidden else "primal"
    return solver


def solve_dual(H: F64, T: F64, alpha: float, sample_weight: F64 | None = None) -> tuple[F64, F64]:
    """(beta (L, k), intercept (k,)) by Cholesky of the (n, n) system Hw Hw^T + alpha I."""
    w = np.ones(H.shape[0]) if sample_weight is None else sample_weight
    total = w.sum()
    h_mean = (w @ H) / total  # (L,)
    t_mean = (w @ T) / total  # (k,)
    root_w = np.sqrt(w)[:, None]  # (n, 1)
    Hw = (H - h_mean) * root_w  # (n, L)
    Tw = (T - t_mean) * root_w  # (n, k)
    beta = Hw.T @ cholesky_solve(Hw @ Hw.T, Tw, alpha)  # (L, k)
    return beta, t_mean - h_mean @ beta


def fit_ridge(
    H: F64, T: F64, alpha: float, solver: str = "auto", sample_weight: F64 | None = None
) -> tuple[F64, F64, GramStats | None]:
    """(beta, intercept, stats): stats are kept for partial_fit when the primal form ran."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}; 1e-3 to 10 is typical")
    if resolve_solver(solver, H.shape[0], H.shape[1]) == "dual":
        beta, intercept = solve_dual(H, T, alpha, sample_weight)
        return beta, intercept, None
    stats = GramStats.from_batch(H, T, sample_weight)
    beta, intercept = stats.solve(alpha)
    return beta, intercept, stats


def as_targets(y: NDArray[Any]) -> F64:
    """Targets as a float64 (n, k) matrix."""
    T = np.asarray(y, dtype=np.float64)
    return T[:, None] if T.ndim == 1 else T
