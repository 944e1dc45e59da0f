"""Pruning: drop the hidden units whose output weights matter least, then refit the output.

A unit's importance is the Euclidean norm of its row of beta (its weights to every output).
The kept units are unchanged; only beta and the intercept are solved again on the data, so a
pruned model is an ordinary, smaller ELM (same files, same ONNX graph, fewer units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from augury.elm.heads import ClassifierHead, RegressorHead
from augury.elm.model import ELMClassifier, ELMRegressor

DEFAULT_FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.125, 0.0625)


@dataclass(frozen=True)
class PrunePoint:
    """One point of the accuracy-vs-size curve."""

    n_hidden: int
    """Units kept."""
    score: float
    """Test accuracy (classification) or R^2 (regression)."""
    size_bytes: int
    """Serving size in the model's inference dtype."""


def unit_ranking(model: ClassifierHead | RegressorHead) -> NDArray[np.intp]:
    """Hidden-unit indices, most important (largest output-weight norm) first."""
    if model.beta_ is None:
        raise ValueError("model is not fitted; nothing to prune")
    norms = np.linalg.norm(model.beta_, axis=1)  # (L,)
    return np.argsort(-norms, kind="stable")


def prune(
    model: ClassifierHead | RegressorHead, X: Any, y: Any, n_keep: int
) -> ELMClassifier | ELMRegressor:
    """A model with the `n_keep` most important units of `model`, output refitted on (X, y)."""
    width = model._hidden().n_hidden
    if not 1 <= n_keep <= width:
        raise ValueError(f"n_keep must be between 1 and {width} (the model's units), got {n_keep}")
    layer = model._hidden().select(np.sort(unit_ranking(model)[:n_keep]))
    pruned: ELMClassifier | ELMRegressor
    if isinstance(model, ClassifierHead):
        pruned = ELMClassifier(model.config, hidden=layer).fit(X, y)
    else:
        pruned = ELMRegressor(model.config, hidden=layer).fit(X, y)
    pruned.feature_names_, pruned.target_ = model.feature_names_, model.target_
    return pruned


def pruning_curve(
    model: ClassifierHead | RegressorHead,
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
) -> list[PrunePoint]:
    """Test score and size after pruning to each fraction of the units (refit on train)."""
    width = model._hidden().n_hidden
    points = []
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"fractions must be in (0, 1], got {fraction}")
        pruned = prune(model, X_train, y_train, max(1, round(width * fraction)))
        size = pruned.n_parameters * pruned.predictor.dtype.itemsize
        points.append(PrunePoint(pruned.config.n_hidden, pruned.score(X_test, y_test), size))
    return points
