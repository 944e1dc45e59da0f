"""ELM classifier and regressor: random fixed hidden layer, ridge output layer in closed form.

    model = ELMClassifier(n_hidden=512, activation="tanh", alpha=1.0, seed=0).fit(X, y)
    model.predict(X); model.predict_proba(X)

Training keeps the Gram statistics (`stats_`), so a fitted model can keep learning with
`partial_fit` and shards trained apart merge exactly (map-reduce):

    scaler = Standardizer.fit(X_a).merge(Standardizer.fit(X_b))    # pass 1: input moments
    a = ELMClassifier(cfg); a.initialize(X_a, standardizer=scaler)  # same seed -> same layer
    b = ELMClassifier(cfg); b.initialize(X_b, standardizer=scaler)
    a.partial_fit(X_a, y_a, classes=k); b.partial_fit(X_b, y_b, classes=k)  # pass 2, per shard
    a.merge(b)                                                      # == fit on X_a + X_b

`gram_stats(X, y)` is the pure map step and `fit_stats(total)` the reduce step, for callers
that move statistics between processes themselves.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from augury.elm.base import F64, check_features
from augury.elm.calibration import fit_temperature, holdout_rows
from augury.elm.heads import ClassifierHead, RegressorHead, sample_weights
from augury.elm.hidden import HiddenLayer
from augury.elm.ridge import GramStats, resolve_solver, solve_dual
from augury.elm.targets import ClassTargets

CHUNK_ROWS = 8192
_DUAL_PARTIAL_FIT = (
    "this model kept no Gram statistics (dual solver, kernel or loaded from disk); "
    "refit it with solver='primal' to continue with partial_fit"
)


def solve_layer(
    hidden: HiddenLayer, A: F64, T: F64, w: F64 | None, alpha: float, solver: str
) -> tuple[F64, F64, GramStats | None]:
    """(beta, intercept, stats) for inputs A (n, d). The primal form streams H in chunks of
    CHUNK_ROWS rows, so memory stays O(CHUNK_ROWS x L) however many rows there are."""
    if resolve_solver(solver, A.shape[0], hidden.n_hidden) == "dual":
        beta, b = solve_dual(hidden.transform(A), T, alpha, w)
        return beta, b, None
    stats = None
    for start in range(0, A.shape[0], CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        H = hidden.transform(A[rows])  # (chunk, L)
        chunk = GramStats.from_batch(H, T[rows], None if w is None else w[rows])
        stats = chunk if stats is None else stats + chunk
    assert stats is not None
    beta, b = stats.solve(alpha)
    return beta, b, stats


class ELMClassifier(ClassifierHead):
    """Extreme learning machine for classification (one-hot ridge targets, softmax output)."""

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        sample_weight: Any = None,
        soft_targets: Any = None,
        classes: Any = None,
    ) -> Self:
        """Fit on labels y, or on `soft_targets` (n, k) probabilities over `classes` (distillation).

        The temperature is fitted on a stratified held-out share (config.calibration_fraction)
        by a model trained without it; the output weights are then solved on every row.
        """
        A = check_features(X)
        if soft_targets is None:
            if y is None:
                raise ValueError("fit needs labels y (or soft_targets with classes)")
            T = self.encode_labels(A.shape[0], y, classes)
        else:
            if classes is None:
                raise ValueError("soft_targets need the classes their columns stand for")
            self.set_targets(ClassTargets(np.asarray(classes)))
            T = np.asarray(soft_targets, dtype=np.float64)
            if T.shape != (A.shape[0], self._classes.shape[0]):
                raise ValueError(f"soft_targets must be (n, k) = {(A.shape[0], len(classes))}")
        idx = T.argmax(axis=1)
        w = self.row_weights(idx, sample_weight)
        self.initialize(A)
        self.temperature_ = self._fit_calibrated(A, T, w, idx)
        return self

    def _fit_calibrated(self, A: F64, T: F64, w: F64 | None, idx: Any) -> float:
        """Solve on every row; return the temperature fitted on a held-out share by a model
        trained without it (in-sample when there are too few rows to hold out)."""
        c, hidden = self.config, self._hidden()
        val = holdout_rows(idx, c.calibration_fraction, c.seed)
        if val is None:
            beta, b, self.stats_ = solve_layer(hidden, A, T, w, c.alpha, c.solver)
            self.set_output(beta, b)
            return fit_temperature(hidden.transform(A) @ beta + b, T)
        tr = np.setdiff1d(np.arange(A.shape[0]), val)
        w_tr, w_val = (None, None) if w is None else (w[tr], w[val])
        beta, b, stats_tr = solve_layer(hidden, A[tr], T[tr], w_tr, c.alpha, c.solver)
        H_val = hidden.transform(A[val])  # (n_val, L)
        tau = fit_temperature(H_val @ beta + b, T[val])
        if stats_tr is not None:  # primal: add the held-out rows' statistics and re-solve
            self.fit_stats(stats_tr + GramStats.from_batch(H_val, T[val], w_val))
        else:
            beta, b, self.stats_ = solve_layer(hidden, A, T, w, c.alpha, c.solver)
            self.set_output(beta, b)
        return tau

    def _chunk(self, X: Any, y: Any, sample_weight: Any) -> tuple[F64, F64, F64 | None]:
        """(H, T, w) of one chunk under this model's hidden layer and classes."""
        A = check_features(X, self._hidden().n_features)
        T = self._targets().encode(np.asarray(y))
        if T.shape[0] != A.shape[0]:
            raise ValueError(f"y has {T.shape[0]} labels for {A.shape[0]} rows")
        return self._hidden().transform(A), T, self.row_weights(T.argmax(axis=1), sample_weight)

    def gram_stats(self, X: Any, y: Any, sample_weight: Any = None) -> GramStats:
        """Statistics of one chunk under this model's hidden layer and classes (map step)."""
        return GramStats.from_batch(*self._chunk(X, y, sample_weight))

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> Self:
        """Add a chunk to the Gram statistics and re-solve (exactly equal to fitting all chunks).

        The first call draws the hidden layer from this chunk (unless `initialize` ran) and
        needs `classes`, every label the stream will contain. The temperature is refitted on
        each new chunk before it is learned, while the chunk is still unseen by the model.
        """
        if self._predictor is not None and self.stats_ is None:
            raise ValueError(_DUAL_PARTIAL_FIT)
        if self.targets_ is None:
            if classes is None:
                raise ValueError("pass classes= (all labels of the stream) on the first call")
            self.set_targets(ClassTargets.from_labels(np.asarray(classes)))
        if self.hidden_ is None:
            self.initialize(X)
        H, T, w = self._chunk(X, y, sample_weight)
        stats = GramStats.from_batch(H, T, w)
        if self._predictor is not None:  # prequential: score the chunk before learning it
            self.temperature_ = fit_temperature(self.scores64(H), T)
            self._add_stats(stats)
        else:
            self._add_stats(stats)
            self.temperature_ = fit_temperature(self.scores64(H), T)
        return self

    def merge(self, *others: ELMClassifier) -> Self:
        """Absorb shards' statistics (same hidden layer and classes) and re-solve.

        The temperature becomes the row-weighted geometric mean of the shards' temperatures;
        call `calibrate` on held-out rows for an exact one.
        """
        for other in others:
            if not np.array_equal(other.classes_, self.classes_):
                raise ValueError(f"shard classes {other.classes_} != {self.classes_}")
        models: list[ELMClassifier] = [self, *others]
        parts = [(m.temperature_, m.stats_.weight) for m in models if m.stats_ is not None]
        log_tau = np.log([tau for tau, _ in parts])
        rows = [weight for _, weight in parts]
        self.fit_stats(self._merged_stats(others))
        self.temperature_ = float(np.exp(np.average(log_tau, weights=rows)))
        return self


class ELMRegressor(RegressorHead):
    """Extreme learning machine for (multi-output) regression."""

    def fit(self, X: Any, y: Any, *, sample_weight: Any = None) -> Self:
        """Fit on targets y (n,) or (n, k)."""
        A = check_features(X)
        T = self.encode_values(A.shape[0], y)
        self.single_output_ = np.ndim(y) == 1
        hidden = self.initialize(A)
        c = self.config
        w = sample_weights(sample_weight, T.shape[0])
        beta, b, self.stats_ = solve_layer(hidden, A, T, w, c.alpha, c.solver)
        self.set_output(beta, b)
        return self

    def gram_stats(self, X: Any, y: Any, sample_weight: Any = None) -> GramStats:
        """Statistics of one chunk under this model's hidden layer (map step)."""
        A = check_features(X, self._hidden().n_features)
        T = self.encode_values(A.shape[0], y)
        w = sample_weights(sample_weight, T.shape[0])
        return GramStats.from_batch(self._hidden().transform(A), T, w)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> Self:
        """Add a chunk to the Gram statistics and re-solve (see ELMClassifier.partial_fit)."""
        if self._predictor is not None and self.stats_ is None:
            raise ValueError(_DUAL_PARTIAL_FIT)
        if self.stats_ is None:
            self.single_output_ = np.ndim(y) == 1
        if self.hidden_ is None:
            self.initialize(X)
        self._add_stats(self.gram_stats(X, y, sample_weight))
        return self

    def merge(self, *others: ELMRegressor) -> Self:
        """Absorb shards' statistics (same hidden layer) and re-solve."""
        self.fit_stats(self._merged_stats(others))
        return self
