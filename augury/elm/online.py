"""Online sequential ELM (OS-ELM): recursive least squares on a fixed hidden layer.

State after chunks 1..N with forgetting factor mu in (0, 1] is the minimiser of

    sum_t mu^(N - t) ||T_t - H1_t beta||^2 + mu^N lambda ||beta||^2

where H1 = [H, 1] carries the intercept as one more (penalised) weight. Starting from
P = I / lambda and beta = 0, each chunk (H1 (n, L+1), T (n, k)) updates

    K    = P H1^T (mu I + H1 P H1^T)^-1            gain (L+1, n), Woodbury form, for n <= L+1
    P    = (P - K H1 P) / mu                        = (mu P^-1 + H1^T H1)^-1
    beta = beta + K (T - H1 beta)

and chunks with more rows than units use the information form P = (mu P^-1 + H1^T H1)^-1
directly. With mu = 1 the result equals batch ridge on all rows seen; mu < 1 forgets old
chunks geometrically, so the model tracks drift (per-session online learning).

The hidden layer comes from the first chunk (or is passed in, e.g. shared by many sessions).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from augury.elm.base import F64, ELMConfig, check_features
from augury.elm.calibration import MIN_HOLDOUT_ROWS, fit_temperature
from augury.elm.heads import ClassifierHead, RegressorHead
from augury.elm.hidden import HiddenLayer
from augury.elm.targets import ClassTargets


class RecursiveLeastSquares:
    """RLS output layer: inverse information matrix P (L+1, L+1) and weights beta (L+1, k)."""

    def __init__(self, n_hidden: int, n_outputs: int, alpha: float, forgetting: float) -> None:
        _check_forgetting(forgetting)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.forgetting = forgetting
        self.P = np.eye(n_hidden + 1) / alpha
        self.beta = np.zeros((n_hidden + 1, n_outputs))

    def update(self, H: F64, T: F64) -> None:
        """Absorb one chunk of hidden features H (n, L) and targets T (n, k)."""
        mu = self.forgetting
        H1 = np.hstack([H, np.ones((H.shape[0], 1))])  # (n, L+1)
        if H1.shape[0] <= H1.shape[1]:
            PHt = self.P @ H1.T  # (L+1, n)
            S = mu * np.eye(H1.shape[0]) + H1 @ PHt  # (n, n), symmetric positive definite
            gain = cho_solve(cho_factor(S, lower=True), PHt.T).T  # (L+1, n) = PHt S^-1
            self.P = (self.P - gain @ PHt.T) / mu
        else:
            info = mu * cho_solve(cho_factor(self.P, lower=True), np.eye(self.P.shape[0]))
            info += H1.T @ H1  # (L+1, L+1)
            self.P = cho_solve(cho_factor(info, lower=True), np.eye(info.shape[0]))
            gain = self.P @ H1.T
        self.P = 0.5 * (self.P + self.P.T)  # keep it symmetric against round-off drift
        self.beta += gain @ (T - H1 @ self.beta)

    @property
    def weights(self) -> tuple[F64, F64]:
        """(beta (L, k), intercept (k,))."""
        return self.beta[:-1], self.beta[-1]


def _check_forgetting(forgetting: float) -> float:
    if not 0.0 < forgetting <= 1.0:
        raise ValueError(f"forgetting must be in (0, 1], got {forgetting}; 0.99 is typical")
    return forgetting


class OnlineELMClassifier(ClassifierHead):
    """OS-ELM classifier; `classes` must list every label the stream will contain."""

    kind = "online_elm"

    def __init__(
        self,
        classes: Any,
        config: ELMConfig | None = None,
        forgetting: float = 1.0,
        hidden: HiddenLayer | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, hidden, **overrides)
        self.set_targets(ClassTargets.from_labels(np.asarray(classes)))
        self.forgetting = _check_forgetting(forgetting)
        self.rls_: RecursiveLeastSquares | None = None

    def partial_fit(self, X: Any, y: Any) -> Self:
        """Learn one chunk.

        The temperature is refitted on each chunk of at least MIN_HOLDOUT_ROWS rows before
        the chunk is learned (prequential: the model has not seen it); the first such chunk
        calibrates in-sample.
        """
        A = check_features(X, None if self.hidden_ is None else self.hidden_.n_features)
        T = self._targets().encode(np.asarray(y))
        hidden = self.hidden_ or self.initialize(A)
        H = hidden.transform(A)  # (n, L)
        if self.rls_ is None:
            c = self.config
            self.rls_ = RecursiveLeastSquares(hidden.n_hidden, T.shape[1], c.alpha, self.forgetting)
        calibrate = A.shape[0] >= MIN_HOLDOUT_ROWS
        if calibrate and self.beta_ is not None:
            self.temperature_ = fit_temperature(self.scores64(H), T)
            calibrate = False
        self.rls_.update(H, T)
        self.set_output(*self.rls_.weights)
        if calibrate:
            self.temperature_ = fit_temperature(self.scores64(H), T)
        return self


class OnlineELMRegressor(RegressorHead):
    """OS-ELM regressor for targets (n,) or (n, k)."""

    kind = "online_elm"

    def __init__(
        self,
        config: ELMConfig | None = None,
        forgetting: float = 1.0,
        hidden: HiddenLayer | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, hidden, **overrides)
        self.forgetting = _check_forgetting(forgetting)
        self.rls_: RecursiveLeastSquares | None = None

    def partial_fit(self, X: Any, y: Any) -> Self:
        """Learn one chunk."""
        A = check_features(X, None if self.hidden_ is None else self.hidden_.n_features)
        T = self.encode_values(A.shape[0], y)
        hidden = self.hidden_ or self.initialize(A)
        if self.rls_ is None:
            self.single_output_ = np.ndim(y) == 1
            c = self.config
            self.rls_ = RecursiveLeastSquares(hidden.n_hidden, T.shape[1], c.alpha, self.forgetting)
        self.rls_.update(hidden.transform(A), T)
        self.set_output(*self.rls_.weights)
        return self
