from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from augury.elm.hidden import Standardizer, build_layer, random_layer, rbf_layer


def test_standardizer_merge_equals_fit_on_union(rng: np.random.Generator) -> None:
    a, b, c = rng.normal(3, 2, (50, 4)), rng.normal(-1, 5, (7, 4)), rng.normal(0, 1, (130, 4))
    merged = Standardizer.fit(a).merge(Standardizer.fit(b)).merge(Standardizer.fit(c))
    whole = np.vstack([a, b, c])
    np.testing.assert_allclose(merged.mean, whole.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.scale, whole.std(axis=0), rtol=1e-12)
    assert merged.count == 187


def test_constant_feature_gets_unit_scale() -> None:
    X = np.column_stack([np.full(10, 5.0), np.arange(10.0)])
    assert Standardizer.fit(X).scale[0] == 1.0


@pytest.mark.parametrize(
    ("activation", "init"), [("tanh", "he"), ("relu", "uniform"), ("rbf", "he")]
)
def test_widening_keeps_the_first_units(
    activation: str, init: str, rng: np.random.Generator
) -> None:
    X = rng.normal(size=(300, 6))
    scaler = Standardizer.fit(X)
    wide = build_layer(X, 200, activation, init, 7, None, scaler)
    narrow = build_layer(X, 50, activation, init, 7, None, scaler)
    np.testing.assert_array_equal(wide.transform(X)[:, :50], narrow.transform(X))


def test_same_seed_same_layer_other_seed_differs(rng: np.random.Generator) -> None:
    scaler = Standardizer.fit(rng.normal(size=(20, 3)))
    a = random_layer(16, "tanh", "he", 3, scaler)
    b = random_layer(16, "tanh", "he", 3, scaler)
    c = random_layer(16, "tanh", "he", 4, scaler)
    np.testing.assert_array_equal(a.weight, b.weight)
    assert not np.array_equal(a.weight, c.weight)


def test_init_scales(rng: np.random.Generator) -> None:
    d, L = 40, 4000
    scaler = Standardizer.fit(rng.normal(size=(10, d)))
    xavier = random_layer(L, "tanh", "xavier", 0, scaler).weight
    assert np.abs(xavier).max() <= np.sqrt(6 / (d + L))
    he = random_layer(L, "relu", "he", 0, scaler).weight
    assert he.std() == pytest.approx(np.sqrt(2 / d), rel=0.02)
    uniform = random_layer(L, "tanh", "uniform", 0, scaler)
    assert np.abs(uniform.weight).max() <= 1 and np.abs(uniform.bias).max() <= 1


def test_transform_is_activation_of_standardized_affine_map(rng: np.random.Generator) -> None:
    X = rng.normal(10, 3, size=(25, 5))
    scaler = Standardizer.fit(X)
    layer = random_layer(12, "sigmoid", "xavier", 0, scaler)
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    expected = 1 / (1 + np.exp(-(Xs @ layer.weight + layer.bias)))
    np.testing.assert_allclose(layer.transform(X), expected, rtol=1e-12)


def test_rbf_layer_is_gaussian_of_distance(rng: np.random.Generator) -> None:
    X = rng.normal(2, 4, size=(30, 4))
    scaler = Standardizer.fit(X)
    centers = rng.normal(size=(9, 4))
    layer = rbf_layer(centers, 0.3, scaler)
    Xs = (X - scaler.mean) / scaler.scale
    expected = np.exp(-0.3 * cdist(Xs, centers, "sqeuclidean"))
    np.testing.assert_allclose(layer.transform(X), expected, rtol=1e-10, atol=1e-14)


def test_bad_init_and_gamma_are_rejected(rng: np.random.Generator) -> None:
    scaler = Standardizer.fit(rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match="unknown init 'glorot'"):
        random_layer(4, "tanh", "glorot", 0, scaler)
    with pytest.raises(ValueError, match="gamma must be > 0"):
        rbf_layer(np.zeros((2, 2)), 0.0, scaler)
