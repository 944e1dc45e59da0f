"""Metrics for ELM reports: one dict of named numbers per task."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)


def classification_metrics(
    y: NDArray[Any], proba: NDArray[Any], classes: NDArray[Any]
) -> dict[str, float]:
    """accuracy, macro F1, log loss (when every label is a known class) and, for two
    classes, ROC-AUC and PR-AUC (average precision) of the second class."""
    y = np.asarray(y)
    pred = classes[np.asarray(proba).argmax(axis=1)]
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "f1_macro": float(f1_score(y, pred, average="macro")),
    }
    if np.all(np.isin(y, classes)):
        out["log_loss"] = float(log_loss(y, np.clip(proba, 1e-15, 1.0), labels=classes))
        if classes.shape[0] == 2 and np.unique(y).shape[0] == 2:
            positive = (y == classes[1]).astype(int)
            out["roc_auc"] = float(roc_auc_score(positive, proba[:, 1]))
            out["pr_auc"] = float(average_precision_score(positive, proba[:, 1]))
    return out


def regression_metrics(y: NDArray[Any], pred: NDArray[Any]) -> dict[str, float]:
    """R^2 (averaged over outputs), MAE and RMSE."""
    Y = np.asarray(y, dtype=np.float64)
    P = np.asarray(pred, dtype=np.float64).reshape(Y.shape)
    return {
        "r2": float(r2_score(Y, P)),
        "mae": float(mean_absolute_error(Y, P)),
        "rmse": float(np.sqrt(np.mean((Y - P) ** 2))),
    }
