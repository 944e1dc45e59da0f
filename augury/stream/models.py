"""Per-session models over window features: anomaly detectors and online ELMs.

Every model takes one feature vector per window (and the window's label, if any), answers
with a `ModelOutput`, and can hand its state over as JSON-able data for checkpoints.

- `ZScoreDetector`: score = RMS of the features' z-scores against exponentially weighted
  means and variances (alpha per window).
- `ELMAutoencoder`: an OS-ELM trained online to reconstruct the standardized features through
  a random hidden layer (shared by every session of the model); score = mean squared
  reconstruction error.
- `OnlineELM`: an OS-ELM regressor or classifier that learns when labelled windows arrive;
  started either from zero or from a trained ELM's weights (`from_trained`).

Both detectors compare the score with `AdaptiveThreshold` (mean + k std of recent normal
scores) and learn only from windows they judged normal, so a fault is not absorbed as normal.
Models that need feature scales collect `warmup` windows first and answer without a score
until then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from augury.stream.windows import F64

if TYPE_CHECKING:  # the ELM models import augury.elm (and scipy, ~50 MB) when first built
    from augury.elm.hidden import HiddenLayer
    from augury.elm.online import RecursiveLeastSquares


@dataclass
class ModelOutput:
    """What a model says about one window (None: not applicable or not ready yet)."""

    score: float | None = None
    threshold: float | None = None
    anomaly: bool | None = None
    prediction: list[float] | None = None
    """Regression outputs, or class scores for classifiers."""
    label: float | None = None
    """Classifiers: the predicted class."""
    learned: bool = False
    """Whether the model updated itself on this window."""


class StreamModel(Protocol):
    """A per-session model; `state`/`load` round-trip through JSON."""

    def step(self, x: F64, label: float | None) -> ModelOutput: ...

    def state(self) -> dict[str, Any]: ...

    def load(self, state: dict[str, Any]) -> None: ...


def _arr(value: Any) -> F64:
    return np.asarray(value, dtype=np.float64)


class AdaptiveThreshold:
    """mean + k * std of the scores of normal windows: plain averages over the first `warmup`
    scores, then exponentially weighted (alpha) so the threshold follows slow drift."""

    def __init__(self, k: float, alpha: float, warmup: int) -> None:
        self.k, self.alpha, self.warmup = k, alpha, warmup
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    @property
    def ready(self) -> bool:
        return self.n >= self.warmup

    @property
    def value(self) -> float:
        return self.mean + self.k * math.sqrt(max(self.var, 0.0))

    def update(self, score: float) -> None:
        self.n += 1
        w = 1.0 / self.n if self.n <= self.warmup else self.alpha
        delta = score - self.mean
        self.mean += w * delta
        self.var = (1.0 - w) * (self.var + w * delta * delta)  # weighted variance recursion

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "var": self.var}

    def load(self, state: dict[str, Any]) -> None:
        self.n, self.mean, self.var = int(state["n"]), float(state["mean"]), float(state["var"])


def _judge(threshold: AdaptiveThreshold, score: float) -> ModelOutput:
    """Compare with the threshold (no verdict while it warms up) and learn from normal ones."""
    if not threshold.ready:
        threshold.update(score)
        return ModelOutput(score=score, threshold=None, anomaly=None)
    limit = threshold.value
    anomaly = score > limit
    if not anomaly:
        threshold.update(score)
    return ModelOutput(score=score, threshold=limit, anomaly=anomaly)


class ZScoreDetector:
    """See the module docstring."""

    def __init__(self, k: float = 4.0, alpha: float = 0.02, warmup: int = 30) -> None:
        self.alpha, self.warmup = alpha, warmup
        self.threshold = AdaptiveThreshold(k, alpha, warmup)
        self.n = 0
        self.mean: F64 | None = None
        self.var: F64 | None = None

    def step(self, x: F64, label: float | None) -> ModelOutput:
        return ZScoreDetector.step_many([self], x[None, :])[0]

    @staticmethod
    def step_many(models: list[ZScoreDetector], X: F64) -> list[ModelOutput]:
        """One window each for several detectors at once (the streaming scheduler's step
        scores every session's window in a few numpy calls): X (S, F), row s for models[s],
        which must be distinct. Row s's result and update are exactly those of
        `models[s].step(X[s])`, which is this with S = 1."""
        for m, x in zip(models, X, strict=True):
            if m.mean is None or m.var is None:
                m.mean, m.var = x.copy(), np.zeros_like(x)
        M = np.array([m.mean for m in models])  # (S, F); np.array: np.stack costs 3x more
        V = np.array([m.var for m in models])
        D = X - M
        D2 = D * D
        scores = np.sqrt((D2 / (V + 1e-12 + 1e-6 * M * M)).sum(axis=1) / X.shape[1])  # RMS z
        outs: list[ModelOutput] = []
        w = np.zeros(len(models))  # learning weight per row; 0: judged anomalous, no update
        for s, m in enumerate(models):
            out = ModelOutput()
            if m.n >= m.warmup:  # the feature statistics are settled: score the window
                out = _judge(m.threshold, float(scores[s]))
            if not out.anomaly:
                m.n += 1
                w[s] = 1.0 / m.n if m.n <= m.warmup else m.alpha
                out.learned = True
            outs.append(out)
        W = w[:, None]
        M_new = M + W * D
        V_new = (1.0 - W) * (V + W * D2)  # exponentially weighted variance recursion
        for s, m in enumerate(models):
            if outs[s].learned:
                m.mean, m.var = M_new[s], V_new[s]
        return outs

    def state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": None if self.mean is None else self.mean.tolist(),
            "var": None if self.var is None else self.var.tolist(),
            "threshold": self.threshold.state(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.n = int(state["n"])
        self.mean = None if state["mean"] is None else _arr(state["mean"])
        self.var = None if state["var"] is None else _arr(state["var"])
        self.threshold.load(state["threshold"])


class WarmupScaler:
    """Standardization fitted on the first `warmup` feature vectors, then frozen."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.rows: list[F64] = []
        self.mean: F64 | None = None
        self.scale: F64 | None = None

    def add(self, x: F64) -> bool:
        """Collect x during warm-up; True once the scales are fixed."""
        if self.mean is None:
            self.rows.append(x)
            if len(self.rows) >= self.warmup:
                from augury.elm.hidden import Standardizer

                fitted = Standardizer.fit(np.stack(self.rows))  # (warmup, d)
                self.mean, self.scale = fitted.mean, fitted.scale
                return True
            return False
        return True

    def transform(self, X: F64) -> F64:
        assert self.mean is not None and self.scale is not None
        return (X - self.mean) / self.scale

    def state(self) -> dict[str, Any]:
        return {
            "rows": [r.tolist() for r in self.rows] if self.mean is None else [],
            "mean": None if self.mean is None else self.mean.tolist(),
            "scale": None if self.scale is None else self.scale.tolist(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.rows = [_arr(r) for r in state["rows"]]
        self.mean = None if state["mean"] is None else _arr(state["mean"])
        self.scale = None if state["scale"] is None else _arr(state["scale"])


def _rls_state(rls: RecursiveLeastSquares) -> dict[str, Any]:
    return {"P": rls.P.tolist(), "beta": rls.beta.tolist()}


def _rls_load(rls: RecursiveLeastSquares, state: dict[str, Any]) -> None:
    rls.P, rls.beta = _arr(state["P"]), _arr(state["beta"])


class ELMAutoencoder:
    """See the module docstring. `hidden` takes standardized features (identity scaling)."""

    def __init__(
        self,
        hidden: HiddenLayer,
        k: float = 4.0,
        alpha: float = 0.02,
        warmup: int = 30,
        forgetting: float = 0.995,
        ridge: float = 1.0,
    ) -> None:
        d = hidden.n_features
        self.hidden = hidden
        self.scaler = WarmupScaler(warmup)
        from augury.elm.online import RecursiveLeastSquares

        self.rls = RecursiveLeastSquares(hidden.n_hidden, d, ridge, forgetting)
        self.threshold = AdaptiveThreshold(k, alpha, warmup)

    def step(self, x: F64, label: float | None) -> ModelOutput:
        if self.scaler.mean is None:
            if self.scaler.add(x):  # warm-up complete: learn the normal windows seen so far
                Z = self.scaler.transform(np.stack(self.scaler.rows))  # (warmup, d)
                self.rls.update(self.hidden.transform(Z), Z)
                self.scaler.rows = []
            return ModelOutput(learned=True)
        z = self.scaler.transform(x)[None, :]  # (1, d)
        H = self.hidden.transform(z)  # (1, L)
        recon = H @ self.rls.beta[:-1] + self.rls.beta[-1]  # (1, d)
        out = _judge(self.threshold, float(np.mean((recon - z) ** 2)))
        if not out.anomaly:
            self.rls.update(H, z)
            out.learned = True
        return out

    def state(self) -> dict[str, Any]:
        return {
            "scaler": self.scaler.state(),
            "rls": _rls_state(self.rls),
            "threshold": self.threshold.state(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.scaler.load(state["scaler"])
        _rls_load(self.rls, state["rls"])
        self.threshold.load(state["threshold"])


class OnlineELM:
    """OS-ELM over window features that learns from labelled windows.

    Regression when `classes` is None (labels are target values), else classification over
    the declared classes (one-hot targets; the prediction is the class with the top score).
    With `scaler` None the hidden layer standardizes on its own (a trained model's layer).
    """

    def __init__(
        self,
        hidden: HiddenLayer,
        classes: list[float] | None = None,
        warmup: int = 30,
        forgetting: float = 0.99,
        ridge: float = 1.0,
        scaler: WarmupScaler | None = None,
    ) -> None:
        self.hidden = hidden
        from augury.elm.online import RecursiveLeastSquares
        from augury.elm.targets import ClassTargets

        self.targets = None if classes is None else ClassTargets.from_labels(_arr(classes))
        k = 1 if self.targets is None else self.targets.n_outputs
        self.rls = RecursiveLeastSquares(hidden.n_hidden, k, ridge, forgetting)
        self.scaler = scaler
        self.pending: list[tuple[F64, float]] = []  # labelled windows seen during warm-up
        self.n_labels = 0

    @classmethod
    def from_trained(
        cls,
        hidden: HiddenLayer,
        beta: F64,
        intercept: F64,
        classes: list[float] | None,
        forgetting: float = 0.99,
        ridge: float = 1.0,
    ) -> OnlineELM:
        """Start at a trained model's weights: with P = I / ridge, RLS then minimises
        ||T - H beta||^2 + ridge ||beta - beta_trained||^2, i.e. it adapts the trained model
        to the session instead of forgetting it."""
        model = cls(hidden, classes, warmup=0, forgetting=forgetting, ridge=ridge)
        model.rls.beta = np.vstack([beta, intercept[None, :]])  # (L+1, k)
        model.n_labels = 1  # predictions are meaningful from the first window
        return model

    def _target(self, label: float) -> F64:
        if self.targets is None:
            return np.array([[label]])
        return self.targets.encode(np.array([label]))  # (1, k)

    def step(self, x: F64, label: float | None) -> ModelOutput:
        if self.scaler is not None and self.scaler.mean is None:
            if label is not None:
                self.pending.append((x, label))
            if self.scaler.add(x) and self.pending:
                X = np.stack([row for row, _ in self.pending])
                T = np.vstack([self._target(y) for _, y in self.pending])
                self.rls.update(self.hidden.transform(self.scaler.transform(X)), T)
                self.n_labels += len(self.pending)
                self.pending = []
            return ModelOutput(learned=label is not None)
        z = x[None, :] if self.scaler is None else self.scaler.transform(x)[None, :]  # (1, d)
        H = self.hidden.transform(z)  # (1, L)
        out = ModelOutput()
        if self.n_labels > 0:  # predict before learning: the answer is an honest forecast
            scores = (H @ self.rls.beta[:-1] + self.rls.beta[-1])[0]  # (k,)
            out.prediction = [float(v) for v in scores]
            if self.targets is not None:
                out.label = float(self.targets.classes[int(np.argmax(scores))])
        if label is not None:
            self.rls.update(H, self._target(label))
            self.n_labels += 1
            out.learned = True
        return out

    def state(self) -> dict[str, Any]:
        return {
            "rls": _rls_state(self.rls),
            "scaler": None if self.scaler is None else self.scaler.state(),
            "pending": [[row.tolist(), y] for row, y in self.pending],
            "n_labels": self.n_labels,
        }

    def load(self, state: dict[str, Any]) -> None:
        _rls_load(self.rls, state["rls"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load(state["scaler"])
        self.pending = [(_arr(row), float(y)) for row, y in state["pending"]]
        self.n_labels = int(state["n_labels"])
