from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from augury.elm import ELMClassifier, ELMRegressor
from augury.elm.prune import prune, pruning_curve, unit_ranking
from tests.elm.conftest import Split


def test_ranking_orders_units_by_output_weight_norm(digits: Split) -> None:
    X, _, y, _ = digits
    model = ELMClassifier(n_hidden=64).fit(X, y)
    norms = np.linalg.norm(model.beta_, axis=1)
    assert np.all(np.diff(norms[unit_ranking(model)]) <= 0)


def test_pruned_model_keeps_the_strongest_units_and_refits(diabetes: Split) -> None:
    X, _, y, _ = diabetes
    model = ELMRegressor(n_hidden=100, alpha=5.0).fit(X, y)
    pruned = prune(model, X, y, 30)
    keep = np.sort(unit_ranking(model)[:30])
    np.testing.assert_array_equal(pruned.hidden_.weight, model.hidden_.weight[:, keep])  # type: ignore[union-attr]
    H = model.hidden_.transform(X)[:, keep]  # type: ignore[union-attr]
    ref = Ridge(alpha=5.0, solver="cholesky").fit(H, y)
    np.testing.assert_allclose(pruned.beta_[:, 0], ref.coef_, rtol=1e-6)  # type: ignore[index]
    assert pruned.config.n_hidden == 30


def test_curve_trades_size_for_accuracy(digits: Split) -> None:
    X, Xt, y, yt = digits
    model = ELMClassifier(n_hidden=256).fit(X, y)
    curve = pruning_curve(model, X, y, Xt, yt, (1.0, 0.5, 0.125))
    assert [p.n_hidden for p in curve] == [256, 128, 32]
    assert curve[0].size_bytes > curve[1].size_bytes > curve[2].size_bytes
    assert curve[0].score > 0.95 and curve[2].score < curve[0].score
    with pytest.raises(ValueError, match="n_keep must be between 1 and 256"):
        prune(model, X, y, 300)
