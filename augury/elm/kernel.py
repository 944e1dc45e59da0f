"""Kernel ELM with the RBF kernel k(x, z) = exp(-gamma ||x - z||^2) on standardized inputs.

Exact (Huang et al. 2012), for small data: with K (n, n) the kernel matrix of the training rows,

    beta = (K + lambda I)^-1 (T - t_mean),    f(x) = k(x, X) @ beta + t_mean

Nystroem approximation, for more rows: m landmark rows, K_mm = U diag(s) U^T, features
Phi = k(X, landmarks) @ U diag(s)^-1/2 (so Phi Phi^T approximates K), ridge in that space
(an (m, m) system; like the exact form, only the targets are centred), then

    beta_phi = (Phi^T Phi + lambda I)^-1 Phi^T (T - t_mean)
    beta     = U diag(s)^-1/2 @ beta_phi      so again f(x) = k(x, landmarks) @ beta + t_mean

With every training row as a landmark this is exactly the exact form.

Either way the fitted model is an rbf hidden layer (centres = training rows or landmarks) plus
output weights, so it serves, saves and exports to ONNX exactly like a random-feature ELM.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from augury.elm.base import F64, ELMBase, ELMConfig, check_features
from augury.elm.calibration import fit_temperature, holdout_rows
from augury.elm.heads import ClassifierHead, RegressorHead
from augury.elm.hidden import HiddenLayer, Standardizer, rbf_layer, sample_centers
from augury.elm.ridge import cholesky_solve

_EIGEN_FLOOR = 1e-10  # relative: Nystroem drops landmark directions below this


def fit_kernel(
    A: F64, T: F64, gamma: float | None, alpha: float, n_components: int | None, seed: int
) -> tuple[HiddenLayer, F64, F64]:
    """(rbf layer, beta, intercept) of an exact (n_components None) or Nystroem kernel ELM."""
    scaler = Standardizer.fit(A)
    g = gamma if gamma is not None else 1.0 / A.shape[1]
    t_mean = T.mean(axis=0)
    if n_components is None:
        layer = rbf_layer((A - scaler.mean) / scaler.scale, g, scaler)  # centres: every row
        beta = cholesky_solve(layer.transform(A), T - t_mean, alpha)  # (n, k)
        return layer, beta, t_mean
    centers = sample_centers(A, n_components, seed, scaler)  # (m, d), standardized
    layer = rbf_layer(centers, g, scaler)
    sq = np.einsum("ij,ij->i", centers, centers)
    K_mm = np.exp(-g * np.maximum(sq[:, None] + sq[None, :] - 2.0 * centers @ centers.T, 0.0))
    s, U = np.linalg.eigh(K_mm)
    keep = s > _EIGEN_FLOOR * s.max()
    projection = U[:, keep] / np.sqrt(s[keep])  # (m, r): phi = k(x, landmarks) @ projection
    Phi = layer.transform(A) @ projection  # (n, r)
    beta_phi = cholesky_solve(Phi.T @ Phi, Phi.T @ (T - t_mean), alpha)  # (r, k)
    return layer, projection @ beta_phi, t_mean


def _kernel_config(
    gamma: float | None,
    alpha: float,
    n_components: int | None,
    seed: int,
    calibration_fraction: float,
    inference_dtype: str,
) -> ELMConfig:
    return ELMConfig(
        n_hidden=n_components or 1,
        activation="rbf",
        alpha=alpha,
        seed=seed,
        gamma=gamma,
        calibration_fraction=calibration_fraction,
        inference_dtype=inference_dtype,
    )


class _KernelMixin(ELMBase):
    """Stores the kernel hyperparameters and installs a kernel fit as the model's state."""

    kind = "kernel_elm"

    def _init_kernel(self, n_components: int | None) -> None:
        if n_components is not None and n_components < 1:
            raise ValueError(f"n_components must be >= 1 or None (exact), got {n_components}")
        self.n_components = n_components

    def _fit_kernel(self, A: F64, T: F64) -> tuple[HiddenLayer, F64, F64]:
        c = self.config
        return fit_kernel(A, T, c.gamma, c.alpha, self.n_components, c.seed)

    def _install(self, A: F64, T: F64) -> None:
        self.hidden_, beta, intercept = self._fit_kernel(A, T)
        self.set_output(beta, intercept)


class KernelELMClassifier(ClassifierHead, _KernelMixin):
    """RBF kernel ELM classifier: exact, or Nystroem with `n_components` landmarks."""

    def __init__(
        self,
        gamma: float | None = None,
        alpha: float = 1.0,
        n_components: int | None = None,
        seed: int = 0,
        calibration_fraction: float = 0.1,
        inference_dtype: str = "float32",
    ) -> None:
        super().__init__(
            _kernel_config(gamma, alpha, n_components, seed, calibration_fraction, inference_dtype)
        )
        self._init_kernel(n_components)

    def fit(self, X: Any, y: Any) -> Self:
        """Fit on labels y; the temperature comes from a held-out share fitted first."""
        A = check_features(X)
        T = self.encode_labels(A.shape[0], y)
        c = self.config
        val = holdout_rows(T.argmax(axis=1), c.calibration_fraction, c.seed)
        if val is not None:
            tr = np.setdiff1d(np.arange(A.shape[0]), val)
            layer, beta, b = self._fit_kernel(A[tr], T[tr])
            self.temperature_ = fit_temperature(layer.transform(A[val]) @ beta + b, T[val])
        self._install(A, T)
        if val is None:
            self.temperature_ = fit_temperature(self.scores64(self._hidden().transform(A)), T)
        return self


class KernelELMRegressor(RegressorHead, _KernelMixin):
    """RBF kernel ELM regressor: exact, or Nystroem with `n_components` landmarks."""

    def __init__(
        self,
        gamma: float | None = None,
        alpha: float = 1.0,
        n_components: int | None = None,
        seed: int = 0,
        inference_dtype: str = "float32",
    ) -> None:
        super().__init__(_kernel_config(gamma, alpha, n_components, seed, 0.0, inference_dtype))
        self._init_kernel(n_components)

    def fit(self, X: Any, y: Any) -> Self:
        """Fit on targets y (n,) or (n, k)."""
        A = check_features(X)
        T = self.encode_values(A.shape[0], y)
        self.single_output_ = np.ndim(y) == 1
        self._install(A, T)
        return self
