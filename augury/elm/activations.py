"""Hidden-unit activations, applied in place so the serving path allocates nothing.

Each activation is a small record in `ACTIVATIONS` (data, not an `if` chain). `forward(z)`
overwrites the pre-activation buffer `z` and returns it. "rbf" is the one distance-based unit:
its pre-activation is already `-gamma * ||x - c||^2` (see `hidden.py`), so its forward is `exp`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf, expit

Array = NDArray[Any]

LEAKY_SLOPE = 0.01
_INV_SQRT2 = 0.7071067811865476


def _sigmoid(z: Array) -> Array:
    return expit(z, out=z)  # type: ignore[no-any-return]


def _tanh(z: Array) -> Array:
    return np.tanh(z, out=z)


def _relu(z: Array) -> Array:
    return np.maximum(z, 0.0, out=z)


def _leaky_relu(z: Array) -> Array:
    return np.maximum(z, z * LEAKY_SLOPE, out=z)


def _gelu(z: Array) -> Array:
    # Exact GELU: z * Phi(z) = z * 0.5 * (1 + erf(z / sqrt(2))).
    phi = erf(z * _INV_SQRT2)
    phi += 1.0
    phi *= 0.5
    z *= phi
    return z


def _sine(z: Array) -> Array:
    return np.sin(z, out=z)


def _exp(z: Array) -> Array:
    # rbf: z = -gamma * ||x - c||^2 <= 0, so exp never overflows.
    return np.exp(z, out=z)


@dataclass(frozen=True)
class Activation:
    """One hidden-unit nonlinearity."""

    name: str
    """Name used in configs, metadata and the CLI."""
    forward: Callable[[Array], Array]
    """In-place forward pass: overwrites and returns its argument."""
    distance_based: bool = False
    """True for rbf: units are centres and the pre-activation is a scaled squared distance."""


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("sigmoid", _sigmoid),
        Activation("tanh", _tanh),
        Activation("relu", _relu),
        Activation("leaky_relu", _leaky_relu),
        Activation("gelu", _gelu),
        Activation("sine", _sine),
        Activation("rbf", _exp, distance_based=True),
    )
}


def get_activation(name: str) -> Activation:
    """The activation called `name`; ValueError listing the choices otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None
