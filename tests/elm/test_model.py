from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from augury.elm import ELMClassifier, ELMConfig, ELMRegressor, NotFittedError, Standardizer
from augury.elm.calibration import softmax
from tests.elm.conftest import Split


def _onehot(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (y[:, None] == classes[None, :]).astype(float)


@pytest.mark.parametrize(
    "activation", ["sigmoid", "tanh", "relu", "leaky_relu", "gelu", "sine", "rbf"]
)
def test_output_weights_equal_sklearn_ridge_on_the_hidden_features(
    activation: str, digits: Split
) -> None:
    X, _, y, _ = digits
    model = ELMClassifier(n_hidden=128, activation=activation, alpha=0.5).fit(X, y)
    H = model.hidden_.transform(X)  # type: ignore[union-attr]
    ref = Ridge(alpha=0.5, solver="cholesky").fit(H, _onehot(y, model.classes_))
    np.testing.assert_allclose(model.beta_, ref.coef_.T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=1e-6, atol=1e-8)


def test_accuracy_on_bundled_sets(digits: Split, cancer: Split, diabetes: Split) -> None:
    X, Xt, y, yt = digits
    assert ELMClassifier(n_hidden=512).fit(X, y).score(Xt, yt) > 0.96
    X, Xt, y, yt = cancer
    assert ELMClassifier(n_hidden=256, alpha=1.0).fit(X, y).score(Xt, yt) > 0.94
    X, Xt, y, yt = diabetes
    assert ELMRegressor(n_hidden=256, alpha=10.0).fit(X, y).score(Xt, yt) > 0.35


def test_probabilities_are_calibrated_and_consistent(digits: Split) -> None:
    X, Xt, y, yt = digits
    model = ELMClassifier(n_hidden=256).fit(X, y)
    P = model.predict_proba(Xt)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.classes_[P.argmax(axis=1)], model.predict(Xt))
    nll = -np.mean(np.log(P[np.arange(len(yt)), np.searchsorted(model.classes_, yt)]))
    assert nll < 0.3
    # temperature 1 on ridge scores (about [0, 1]) is near-uniform: nll close to log(10) = 2.3
    flat = softmax(model.decision_function(Xt), 1.0)
    assert -np.mean(np.log(flat[np.arange(len(yt)), np.searchsorted(model.classes_, yt)])) > 1.5
    assert 0.001 < model.temperature_ < 1.0


def test_single_row_fast_path_equals_batch_path(cancer: Split) -> None:
    X, Xt, y, _ = cancer
    model = ELMClassifier(n_hidden=64).fit(X, y)
    rows = Xt[:20].astype(np.float32)
    batch_labels, batch_proba = model.predict(rows), model.predict_proba(rows)
    for i in range(20):
        row = rows[i : i + 1]
        assert model.predictor.is_row(row)
        assert model.predict(row)[0] == batch_labels[i]
        np.testing.assert_allclose(
            model.predict_proba(row)[0], batch_proba[i], rtol=1e-5, atol=1e-7
        )
    assert model.predict(Xt[:1])[0] == batch_labels[0]  # float64 input takes the checked path


def test_float32_serving_agrees_with_float64(digits: Split) -> None:
    X, Xt, y, _ = digits
    f32 = ELMClassifier(n_hidden=256).fit(X, y)
    f64 = ELMClassifier(n_hidden=256, inference_dtype="float64").fit(X, y)
    np.testing.assert_allclose(f32.predict_proba(Xt), f64.predict_proba(Xt), atol=2e-5)


def test_predictor_from_another_thread(cancer: Split) -> None:
    X, Xt, y, _ = cancer
    model = ELMClassifier(n_hidden=32).fit(X, y)
    row = Xt[:1].astype(np.float32)
    expected = model.predict_proba(row)
    seen: list[np.ndarray] = []
    thread = threading.Thread(target=lambda: seen.append(model.predict_proba(row)))
    thread.start()
    thread.join()
    np.testing.assert_allclose(seen[0], expected, rtol=1e-6)


def test_dual_and_primal_solvers_agree(cancer: Split) -> None:
    X, Xt, y, _ = cancer
    X = X[:150]
    y = y[:150]
    primal = ELMRegressor(n_hidden=300, solver="primal").fit(X, y)
    dual = ELMRegressor(n_hidden=300, solver="dual").fit(X, y)
    np.testing.assert_allclose(primal.beta_, dual.beta_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(primal.predict(Xt), dual.predict(Xt), rtol=1e-4, atol=1e-4)


def test_multi_output_regression_equals_separate_fits(diabetes: Split) -> None:
    X, Xt, y, _ = diabetes
    Y = np.column_stack([y, np.log(y), -2 * y])
    joint = ELMRegressor(n_hidden=64, alpha=3.0, inference_dtype="float64").fit(X, Y)
    assert joint.predict(Xt).shape == (len(Xt), 3)
    for j in range(3):
        alone = ELMRegressor(n_hidden=64, alpha=3.0, inference_dtype="float64").fit(X, Y[:, j])
        assert alone.predict(Xt).shape == (len(Xt),)
        np.testing.assert_allclose(joint.predict(Xt)[:, j], alone.predict(Xt), rtol=1e-9)


def test_sharded_training_equals_single_machine_training(digits: Split) -> None:
    """Map-reduce: shards share the merged standardization and seed, accumulate their own
    Gram statistics, and the merge solves exactly the problem of fitting all rows at once."""
    X, Xt, y, _ = digits
    config = ELMConfig(n_hidden=200, alpha=0.3, seed=5)
    single = ELMClassifier(config).fit(X, y)
    shards = np.array_split(np.arange(len(X)), 3)
    scaler = Standardizer.fit(X[shards[0]])
    for rows in shards[1:]:
        scaler = scaler.merge(Standardizer.fit(X[rows]))
    workers = []
    for rows in shards:
        worker = ELMClassifier(config)
        worker.initialize(X[rows], standardizer=scaler)
        worker.partial_fit(X[rows], y[rows], classes=np.arange(10))
        workers.append(worker)
    merged = workers[0].merge(*workers[1:])
    np.testing.assert_allclose(merged.beta_, single.beta_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(merged.intercept_, single.intercept_, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(merged.predict(Xt), single.predict(Xt))


def test_map_and_reduce_steps_for_regression(diabetes: Split) -> None:
    X, _, y, _ = diabetes
    single = ELMRegressor(n_hidden=40, seed=2).fit(X, y)
    coordinator = ELMRegressor(n_hidden=40, seed=2)
    coordinator.initialize(X)  # same rows -> same standardization as `single`
    stats = [coordinator.gram_stats(X[s], y[s]) for s in (slice(0, 100), slice(100, None))]
    coordinator.fit_stats(stats[0] + stats[1])
    np.testing.assert_allclose(coordinator.beta_, single.beta_, rtol=1e-8)


def test_partial_fit_chunks_equal_one_fit(cancer: Split) -> None:
    X, _, y, _ = cancer
    model = ELMClassifier(n_hidden=50, seed=1)
    model.initialize(X)
    for rows in np.array_split(np.arange(len(X)), 4):
        model.partial_fit(X[rows], y[rows], classes=[0, 1])
    whole = ELMClassifier(n_hidden=50, seed=1).fit(X, y)
    np.testing.assert_allclose(model.beta_, whole.beta_, rtol=1e-7, atol=1e-9)


def test_soft_one_hot_targets_equal_hard_labels(digits: Split) -> None:
    X, _, y, _ = digits
    hard = ELMClassifier(n_hidden=64).fit(X, y)
    soft = ELMClassifier(n_hidden=64).fit(X, soft_targets=np.eye(10)[y], classes=np.arange(10))
    np.testing.assert_allclose(hard.beta_, soft.beta_, rtol=1e-10)


def test_balanced_class_weight_equals_explicit_sample_weights(cancer: Split) -> None:
    X, _, y, _ = cancer
    counts = np.bincount(y)
    w = len(y) / (2 * counts[y])
    balanced = ELMClassifier(n_hidden=30, class_weight="balanced").fit(X, y)
    weighted = ELMClassifier(n_hidden=30).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(balanced.beta_, weighted.beta_, rtol=1e-10)


def test_string_labels_round_trip(cancer: Split) -> None:
    X, Xt, y, yt = cancer
    names = np.array(["benign", "malignant"])
    model = ELMClassifier(n_hidden=40).fit(X, names[y])
    assert set(model.predict(Xt)) <= set(names)
    assert model.score(Xt, names[yt]) > 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_hidden": 0}, "n_hidden must be >= 1"),
        ({"alpha": 0.0}, "alpha must be > 0"),
        ({"activation": "swish"}, "unknown activation"),
        ({"init": "glorot"}, "unknown init"),
        ({"calibration_fraction": 1.0}, "calibration_fraction"),
        ({"class_weight": "auto"}, "class_weight"),
    ],
)
def test_bad_config_is_rejected_with_the_fix(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ELMConfig(**kwargs)  # type: ignore[arg-type]


def test_input_errors(cancer: Split) -> None:
    X, _, y, _ = cancer
    with pytest.raises(NotFittedError, match="not fitted"):
        ELMClassifier().predict(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        ELMClassifier(n_hidden=8).fit(X, np.zeros(len(X)))
    bad = X.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"feature columns \[4\] contain NaN"):
        ELMClassifier(n_hidden=8).fit(bad, y)
    model = ELMClassifier(n_hidden=8).fit(X, y)
    with pytest.raises(ValueError, match=r"shape \(n, 30\)"):
        model.predict(X[:, :5])
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(bad[3:4].astype(np.float32))
    with pytest.raises(ValueError, match=r"input rows \[3\]"):
        model.predict(bad)
    with pytest.raises(ValueError, match="classes="):
        ELMClassifier(n_hidden=8).partial_fit(X, y)


def test_merge_rejects_different_hidden_layers(cancer: Split) -> None:
    X, _, y, _ = cancer
    a = ELMClassifier(n_hidden=10, seed=0).partial_fit(X, y, classes=[0, 1])
    b = ELMClassifier(n_hidden=10, seed=1).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="different hidden layers"):
        a.merge(b)


def test_partial_fit_after_dual_fit_explains_itself(cancer: Split) -> None:
    X, _, y, _ = cancer
    model = ELMRegressor(n_hidden=400, solver="dual").fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="no Gram statistics"):
        model.partial_fit(X[100:], y[100:])
