"""Class labels to one-hot target rows and back.

Regression needs no encoding: ridge is linear in T, so scaling targets cannot change the fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class ClassTargets:
    """Sorted class labels; labels are encoded as one-hot rows in that order."""

    classes: NDArray[Any]
    """(k,) labels, sorted; k >= 2."""

    @classmethod
    def from_labels(cls, y: NDArray[Any], classes: NDArray[Any] | None = None) -> ClassTargets:
        """Classes seen in y (or the declared `classes`, for streaming)."""
        labels = np.unique(np.asarray(y) if classes is None else np.asarray(classes))
        if labels.shape[0] < 2:
            found = labels.tolist()
            raise ValueError(
                f"classification needs at least 2 classes, found {len(found)} ({found}); "
                "check the target column, or use the regression task"
            )
        return cls(labels)

    @property
    def n_outputs(self) -> int:
        return int(self.classes.shape[0])

    def indices(self, y: NDArray[Any]) -> NDArray[np.intp]:
        """Position of each label in `classes`; ValueError for labels never declared."""
        y = np.asarray(y)
        idx = np.searchsorted(self.classes, y)
        idx = np.clip(idx, 0, self.classes.shape[0] - 1)
        unknown = self.classes[idx] != y
        if np.any(unknown):
            bad = np.unique(y[unknown])[:5].tolist()
            raise ValueError(
                f"labels {bad} are not among the model's classes {self.classes.tolist()}; "
                "declare every class up front (classes=...)"
            )
        return idx

    def encode(self, y: NDArray[Any]) -> F64:
        """One-hot matrix (n, k)."""
        idx = self.indices(y)
        T = np.zeros((idx.shape[0], self.n_outputs))
        T[np.arange(idx.shape[0]), idx] = 1.0
        return T
