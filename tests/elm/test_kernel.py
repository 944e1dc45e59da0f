from __future__ import annotations

import numpy as np
from sklearn.kernel_ridge import KernelRidge

from augury.elm.kernel import KernelELMClassifier, KernelELMRegressor
from tests.elm.conftest import Split


def test_exact_kernel_elm_equals_kernel_ridge(diabetes: Split) -> None:
    X, Xt, y, _ = diabetes
    model = KernelELMRegressor(gamma=0.05, alpha=0.8, inference_dtype="float64").fit(X, y)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    ref = KernelRidge(alpha=0.8, kernel="rbf", gamma=0.05).fit((X - mu) / sd, y - y.mean())
    np.testing.assert_allclose(model.predict(Xt), ref.predict((Xt - mu) / sd) + y.mean(), rtol=1e-8)


def test_nystroem_with_every_row_as_landmark_equals_exact(diabetes: Split) -> None:
    X, Xt, y, yt = diabetes
    exact = KernelELMRegressor(alpha=1.0, inference_dtype="float64").fit(X, y)
    full = KernelELMRegressor(alpha=1.0, n_components=len(X), inference_dtype="float64")
    np.testing.assert_allclose(full.fit(X, y).predict(Xt), exact.predict(Xt), rtol=1e-6)
    few = KernelELMRegressor(alpha=1.0, n_components=60, inference_dtype="float64").fit(X, y)
    assert few.hidden_.n_hidden == 60  # type: ignore[union-attr]
    assert few.score(Xt, yt) > exact.score(Xt, yt) - 0.1


def test_kernel_classifier_exact_and_nystroem_accuracy(digits: Split) -> None:
    X, Xt, y, yt = digits
    exact = KernelELMClassifier(alpha=0.01).fit(X, y)
    assert exact.score(Xt, yt) > 0.97
    approx = KernelELMClassifier(alpha=0.01, n_components=500).fit(X, y)
    assert approx.score(Xt, yt) > 0.95
    assert approx.hidden_.n_hidden == 500  # type: ignore[union-attr]
    np.testing.assert_allclose(approx.predict_proba(Xt).sum(axis=1), 1.0, rtol=1e-5)
