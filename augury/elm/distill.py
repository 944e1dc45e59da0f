"""Distillation: train a small, fast ELM student on a teacher's soft probabilities.

The teacher is anything that satisfies `Teacher` (classes_ and predict_proba): a scikit-learn
estimator through `SklearnTeacher`, or later a served model behind the same two members. The
student regresses the teacher's probability rows (ridge on soft targets), then fits its softmax
temperature against them on held-out rows, so it learns the teacher's confidence as well as
its decisions. Optional Gaussian jitter around the training rows (`augment`) shows the student
more of the teacher's decision surface than the labelled rows alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from augury.elm.base import ELMConfig
from augury.elm.model import ELMClassifier


class Teacher(Protocol):
    """What distillation needs from a teacher model."""

    @property
    def classes_(self) -> NDArray[Any]:
        """(k,) class labels, in the order of the probability columns."""
        ...

    def predict_proba(self, X: NDArray[Any]) -> NDArray[Any]:
        """(n, k) class probabilities."""
        ...


class SklearnTeacher:
    """Adapter: any fitted scikit-learn classifier with predict_proba is a Teacher."""

    def __init__(self, estimator: Any) -> None:
        if not hasattr(estimator, "predict_proba") or not hasattr(estimator, "classes_"):
            raise ValueError(
                f"{type(estimator).__name__} cannot teach: it needs predict_proba and classes_ "
                "(fit it first; for SVC pass probability=True)"
            )
        self.estimator = estimator

    @property
    def classes_(self) -> NDArray[Any]:
        return np.asarray(self.estimator.classes_)

    def predict_proba(self, X: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(self.estimator.predict_proba(X))

    def predict(self, X: NDArray[Any]) -> NDArray[Any]:
        labels: NDArray[Any] = self.classes_[self.predict_proba(X).argmax(axis=1)]
        return labels

    @property
    def size_bytes(self) -> int:
        """Bytes of the fitted arrays the estimator holds (trees, coefficients, ...)."""
        return array_bytes(self.estimator)


def array_bytes(obj: Any, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """Total nbytes of the numpy arrays reachable from obj's fitted state (no pickling)."""
    seen = _seen if _seen is not None else set()
    if id(obj) in seen or _depth > 12:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(array_bytes(v, seen, _depth + 1) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(array_bytes(v, seen, _depth + 1) for v in obj)
    if isinstance(obj, str | bytes | int | float | bool | type(None)):
        return 0
    state = getattr(obj, "__dict__", None)
    if state is None and hasattr(obj, "__getstate__"):  # e.g. sklearn's Cython Tree
        state = obj.__getstate__()
    return array_bytes(state, seen, _depth + 1) if isinstance(state, dict) else 0


@dataclass(frozen=True)
class ModelReport:
    """Accuracy, size and speed of one model on the same test rows."""

    name: str
    accuracy: float
    size_bytes: int
    p50_us: float
    """Median latency of predicting one row, microseconds."""
    batch_us_per_row: float
    """Latency of a 1024-row batch divided by 1024, microseconds."""


@dataclass(frozen=True)
class DistillReport:
    """Teacher vs student on held-out rows."""

    teacher: ModelReport
    student: ModelReport
    agreement: float
    """Share of test rows where student and teacher predict the same class."""


def row_latency_us(predict: Callable[[Any], Any], rows: NDArray[Any], repeats: int = 200) -> float:
    """Median microseconds of predict(one row), cycling through `rows` (n, d)."""
    times = np.empty(repeats)
    for i in range(repeats):
        x = rows[i % rows.shape[0] : i % rows.shape[0] + 1]
        start = time.perf_counter()
        predict(x)
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e6)


def batch_latency_us(predict: Callable[[Any], Any], X: NDArray[Any], size: int = 1024) -> float:
    """Microseconds per row of predicting a batch of `size` rows (best of 5)."""
    batch = X[np.arange(size) % X.shape[0]]
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        predict(batch)
        best = min(best, time.perf_counter() - start)
    return float(best / size * 1e6)


def distill(
    teacher: Teacher,
    X_train: NDArray[Any],
    config: ELMConfig | None = None,
    augment: int = 0,
    noise: float = 0.1,
    seed: int = 0,
) -> ELMClassifier:
    """An ELM student trained on the teacher's probabilities for X_train.

    augment: add this many jittered copies of every row (Gaussian noise of `noise` feature
    standard deviations), labelled by the teacher.
    """
    X = np.asarray(X_train, dtype=np.float64)
    if augment > 0:
        rng = np.random.default_rng(seed)
        spread = X.std(axis=0) * noise
        copies = [X + rng.standard_normal(X.shape) * spread for _ in range(augment)]
        X = np.vstack([X, *copies])
    soft = np.asarray(teacher.predict_proba(X), dtype=np.float64)  # (n, k)
    return ELMClassifier(config).fit(X, soft_targets=soft, classes=teacher.classes_)


def compare(
    teacher: SklearnTeacher, student: ELMClassifier, X_test: NDArray[Any], y_test: NDArray[Any]
) -> DistillReport:
    """Accuracy, size and latency of teacher and student on the same test rows."""
    X64 = np.asarray(X_test, dtype=np.float64)
    X32 = X64.astype(student.predictor.dtype)
    y = np.asarray(y_test)
    t_pred, s_pred = teacher.predict(X64), student.predict(X32)
    t = ModelReport(
        f"teacher ({type(teacher.estimator).__name__})",
        float(np.mean(t_pred == y)),
        teacher.size_bytes,
        row_latency_us(teacher.predict, X64, repeats=50),
        batch_latency_us(teacher.predict, X64),
    )
    s = ModelReport(
        f"student (ELM, {student.config.n_hidden} {student.config.activation} units)",
        float(np.mean(s_pred == y)),
        student.n_parameters * student.predictor.dtype.itemsize,
        row_latency_us(student.predict, X32),
        batch_latency_us(student.predict, X32),
    )
    return DistillReport(t, s, float(np.mean(t_pred == s_pred)))
