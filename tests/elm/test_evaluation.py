from __future__ import annotations

import numpy as np
import pytest

from augury.elm.evaluation import classification_metrics, regression_metrics


def test_binary_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2]])
    m = classification_metrics(y, proba, np.array([0, 1]))
    assert m["accuracy"] == 0.5
    assert m["roc_auc"] == 0.75  # positives 0.7, 0.2 vs negatives 0.1, 0.6: 3 of 4 pairs
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.2])))
    assert m["pr_auc"] == pytest.approx((1.0 + 2 / 3) / 2)  # precision at each positive


def test_unknown_labels_skip_log_loss_and_regression_by_hand() -> None:
    m = classification_metrics(
        np.array([0, 2]), np.array([[0.6, 0.4], [0.5, 0.5]]), np.array([0, 1])
    )
    assert "log_loss" not in m and m["accuracy"] == 0.5
    r = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert r["mae"] == pytest.approx(2 / 3) and r["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert r["r2"] == pytest.approx(1 - 4 / 2)
