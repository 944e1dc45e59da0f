"""Features of a window, computed for every channel at once.

For a window of n events and c channels (values (n, c), times (n,)), each feature gives (c,):

    mean, std (population), min, max
    rms      sqrt(mean(x^2))
    slope    least-squares slope of x against time, in units per second (0 if n < 2 or
             all times are equal)
    bands    energies of `n_bands` equal-width frequency bands of the de-meaned signal:
             |rfft(x - mean)|^2 / n summed over each band of bins 1..n//2 (the DC bin is
             left out); one feature per band, band0 lowest. Bins are split by index, so
             the bands assume roughly even sampling, as vibration sensors give.

The feature vector is channel-major: for each channel, the features in the declared order,
with "bands" expanded to band0..band{n_bands-1}; `feature_names` gives the matching names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from augury.stream.windows import F64

FEATURES = ("mean", "std", "min", "max", "rms", "slope", "bands")
DEFAULT_BANDS = 4


def check_features(features: Sequence[str], n_bands: int) -> tuple[str, ...]:
    """The features, validated; raises ValueError naming an unknown one."""
    if not features:
        raise ValueError(f"features must name at least one of {', '.join(FEATURES)}")
    for name in features:
        if name not in FEATURES:
            raise ValueError(f"unknown feature {name!r}; choose from {', '.join(FEATURES)}")
    if len(set(features)) != len(features):
        raise ValueError(f"features lists one twice: {list(features)}")
    if "bands" in features and not 1 <= n_bands <= 64:
        raise ValueError(f"n_bands must be in [1, 64], got {n_bands}")
    return tuple(features)


def feature_names(channels: Sequence[str], features: Sequence[str], n_bands: int) -> list[str]:
    """Names of the vector's entries, e.g. ['x.mean', 'x.band0', ..., 'y.mean', ...]."""
    per_channel: list[str] = []
    for name in features:
        per_channel += [f"band{b}" for b in range(n_bands)] if name == "bands" else [name]
    return [f"{ch}.{f}" for ch in channels for f in per_channel]


def extract(times: F64, values: F64, features: Sequence[str], n_bands: int) -> F64:
    """The feature vector (c * per_channel,) of one window; see the module docstring."""
    mean = values.mean(axis=0)  # (c,)
    columns = [_FEATURES[name](times, values, mean, n_bands) for name in features]  # (c, k) each
    return np.concatenate(columns, axis=1).reshape(-1)  # (c, per_channel) -> channel-major


FeatureFn = Callable[[F64, F64, F64, int], F64]
"""(times (n,), values (n, c), mean (c,), n_bands) -> (c, k)."""

_FEATURES: dict[str, FeatureFn] = {
    "mean": lambda t, x, m, nb: m[:, None],
    "std": lambda t, x, m, nb: x.std(axis=0)[:, None],
    "min": lambda t, x, m, nb: x.min(axis=0)[:, None],
    "max": lambda t, x, m, nb: x.max(axis=0)[:, None],
    "rms": lambda t, x, m, nb: np.sqrt(np.mean(x * x, axis=0))[:, None],
    "slope": lambda t, x, m, nb: _slope(t, x, m)[:, None],
    "bands": lambda t, x, m, nb: band_energies(x - m, nb),
}


def _slope(times: F64, values: F64, mean: F64) -> F64:
    """(c,) least-squares slopes: sum((t - t̄)(x - x̄)) / sum((t - t̄)^2)."""
    dt = times - times.mean()  # (n,)
    denom = float(dt @ dt)
    if values.shape[0] < 2 or denom <= 0.0:
        return np.zeros(values.shape[1])
    return (dt @ (values - mean)) / denom  # (c,)


def band_energies(centered: F64, n_bands: int) -> F64:
    """(c, n_bands) energies of the de-meaned signal (n, c) in equal bands of bins 1..n//2."""
    n, c = centered.shape
    power = np.abs(np.fft.rfft(centered, axis=0)) ** 2 / max(n, 1)  # (n//2 + 1, c)
    power = power[1:]  # drop DC: it is the mean, a feature of its own
    if power.shape[0] == 0:
        return np.zeros((c, n_bands))
    edges = np.linspace(0, power.shape[0], n_bands + 1).round().astype(int)[:-1]  # band starts
    sums = np.add.reduceat(power, edges, axis=0)  # (n_bands, c); an empty band repeats a row
    sums[np.diff(np.append(edges, power.shape[0])) == 0] = 0.0
    return sums.T  # (c, n_bands)
