from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf, expit

from augury.elm.activations import ACTIVATIONS, LEAKY_SLOPE, get_activation

REFERENCE = {
    "sigmoid": lambda z: expit(z),
    "tanh": np.tanh,
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
    "gelu": lambda z: 0.5 * z * (1.0 + erf(z / np.sqrt(2.0))),
    "sine": np.sin,
    "rbf": np.exp,
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_formula_in_place(name: str, dtype: type, rng: np.random.Generator) -> None:
    z = rng.normal(0, 2, size=(7, 33)).astype(dtype)
    if name == "rbf":
        z = -np.abs(z)  # rbf pre-activations are negative squared distances
    expected = REFERENCE[name](z.astype(np.float64))
    buffer = z.copy()
    out = get_activation(name).forward(buffer)
    assert out is buffer  # no allocation on the serving path
    assert out.dtype == dtype
    np.testing.assert_allclose(
        out, expected, rtol=2e-6 if dtype == np.float32 else 1e-12, atol=1e-6
    )


def test_every_activation_has_a_reference() -> None:
    assert set(REFERENCE) == set(ACTIVATIONS)
    assert [n for n, a in ACTIVATIONS.items() if a.distance_based] == ["rbf"]


def test_unknown_activation_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of sigmoid, tanh"):
        get_activation("swish")
