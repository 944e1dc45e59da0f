"""Prediction for each task, shared by every ELM variant (random, kernel, pruned, loaded).

A head turns output scores (n, k) into answers: labels and calibrated probabilities for
classification, values for regression. How the scores' weights were trained is not its concern.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from augury.elm.base import F64, ELMBase, ELMConfig, NotFittedError
from augury.elm.calibration import fit_temperature, softmax
from augury.elm.hidden import HiddenLayer
from augury.elm.ridge import as_targets
from augury.elm.targets import ClassTargets


def sample_weights(sample_weight: Any, n: int) -> F64 | None:
    """Validated per-row weights (n,), or None."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"sample_weight must be {n} finite non-negative numbers")
    return w


class ClassifierHead(ELMBase):
    """Labels from the argmax score; probabilities from softmax(scores / temperature)."""

    task = "classification"

    def __init__(
        self, config: ELMConfig | None = None, hidden: HiddenLayer | None = None, **overrides: Any
    ) -> None:
        super().__init__(config, hidden, **overrides)
        self.targets_: ClassTargets | None = None
        self.temperature_: float = 1.0
        self._classes: NDArray[Any] = np.empty(0)

    @property
    def classes_(self) -> NDArray[Any]:
        return self._targets().classes

    def _targets(self) -> ClassTargets:
        if self.targets_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        return self.targets_

    def set_targets(self, targets: ClassTargets) -> None:
        self.targets_ = targets
        self._classes = targets.classes

    def encode_labels(self, X_rows: int, y: Any, classes: Any = None) -> F64:
        """One-hot targets (n, k) for labels y, setting the classes (declared or seen)."""
        labels = np.asarray(y)
        if labels.shape != (X_rows,):
            raise ValueError(f"y must hold one label per row: got shape {labels.shape}")
        self.set_targets(ClassTargets.from_labels(labels, classes))
        return self._targets().encode(labels)

    def row_weights(self, idx: NDArray[np.intp], sample_weight: Any) -> F64 | None:
        """Sample weights times class weights ("balanced": n / (k * count of the row's class))."""
        w = sample_weights(sample_weight, idx.shape[0])
        if self.config.class_weight == "balanced":
            k = self._classes.shape[0]
            counts = np.bincount(idx, minlength=k).astype(np.float64)
            balanced = idx.shape[0] / (k * np.maximum(counts, 1.0))
            w = balanced[idx] if w is None else w * balanced[idx]
        return w

    def calibrate(self, X: Any, y: Any) -> Self:
        """Refit the softmax temperature on held-out rows."""
        T = self._targets().encode(np.asarray(y))
        self.temperature_ = fit_temperature(self.decision_function(X).astype(np.float64), T)
        return self

    def predict(self, X: Any) -> NDArray[Any]:
        """Class labels (n,). One row (1, d) in the serving dtype takes the allocation-free path."""
        p = self.predictor
        if p.is_row(X):
            i = int(p.row_scores(X).argmax())
            return self._classes[i : i + 1]
        labels: NDArray[Any] = self._classes[p.scores(X).argmax(axis=1)]
        return labels

    def predict_proba(self, X: Any) -> NDArray[Any]:
        """Class probabilities (n, k): softmax of the scores over the fitted temperature."""
        p = self.predictor
        scores = p.row_scores(X).copy() if p.is_row(X) else p.scores(X)
        return softmax(scores, self.temperature_)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


class RegressorHead(ELMBase):
    """Predictions are the output scores themselves; 1-D targets give 1-D predictions."""

    task = "regression"

    def __init__(
        self, config: ELMConfig | None = None, hidden: HiddenLayer | None = None, **overrides: Any
    ) -> None:
        super().__init__(config, hidden, **overrides)
        self.single_output_: bool = True

    def encode_values(self, n_rows: int, y: Any) -> F64:
        """Targets (n, k) as float64; ValueError for a wrong length or non-finite values."""
        T = as_targets(np.asarray(y))
        if T.ndim != 2 or T.shape[0] != n_rows:
            raise ValueError(f"y must have one row per input row: got shape {np.shape(y)}")
        if not np.all(np.isfinite(T)):
            raise ValueError("targets contain NaN or infinity; drop or impute those rows")
        return T

    def predict(self, X: Any) -> NDArray[Any]:
        """Predictions (n,) for a single target, else (n, k)."""
        p = self.predictor
        S = p.row_scores(X).copy() if p.is_row(X) else p.scores(X)
        return S[:, 0] if self.single_output_ else S

    def score(self, X: Any, y: Any) -> float:
        """Coefficient of determination R^2, averaged over outputs."""
        Y = as_targets(np.asarray(y))
        P = as_targets(self.predict(X)).astype(np.float64)
        ss_res = ((Y - P) ** 2).sum(axis=0)
        ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
        return float(np.mean(1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0)))
