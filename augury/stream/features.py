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

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from augury.stream.windows import F64, Window

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
    return extract_batch(times[None, :], values[None, :, :], features, n_bands)[0]


def extract_batch(times: F64, values: F64, features: Sequence[str], n_bands: int) -> F64:
    """Feature vectors (W, c * per_channel) of W windows of the same length n at once:
    times (W, n), values (W, n, c). Row w equals `extract(times[w], values[w], ...)`."""
    mean = values.mean(axis=1)  # (W, c)
    centered = values - mean[:, None, :]  # (W, n, c)
    columns = [_FEATURES[name](times, values, centered, mean, n_bands) for name in features]
    table = columns[0] if len(columns) == 1 else np.concatenate(columns, axis=2)  # (W, c, k)
    return table.reshape(values.shape[0], -1)  # channel-major rows


FeatureFn = Callable[[F64, F64, F64, F64, int], F64]
"""(times (W, n), values (W, n, c), centered (W, n, c), mean (W, c), n_bands) -> (W, c, k)."""

_FEATURES: dict[str, FeatureFn] = {
    "mean": lambda t, x, xc, m, nb: m[:, :, None],
    "std": lambda t, x, xc, m, nb: np.sqrt(np.mean(xc * xc, axis=1))[:, :, None],
    "min": lambda t, x, xc, m, nb: x.min(axis=1)[:, :, None],
    "max": lambda t, x, xc, m, nb: x.max(axis=1)[:, :, None],
    "rms": lambda t, x, xc, m, nb: np.sqrt(np.mean(x * x, axis=1))[:, :, None],
    "slope": lambda t, x, xc, m, nb: _slope(t, xc)[:, :, None],
    "bands": lambda t, x, xc, m, nb: band_energies(xc, nb),
}


def _slope(times: F64, centered: F64) -> F64:
    """(W, c) least-squares slopes: sum((t - t̄)(x - x̄)) / sum((t - t̄)^2), 0 where the
    window has one event or all its times are equal."""
    dt = times - times.mean(axis=1, keepdims=True)  # (W, n)
    denom = np.einsum("wn,wn->w", dt, dt)  # (W,)
    num = np.einsum("wn,wnc->wc", dt, centered)  # (W, c)
    ok = denom > 0.0
    if times.shape[1] < 2 or not ok.any():
        return np.zeros(num.shape)
    return np.where(ok[:, None], num / np.where(ok, denom, 1.0)[:, None], 0.0)


def band_energies(centered: F64, n_bands: int) -> F64:
    """(W, c, n_bands) energies of de-meaned signals (W, n, c) in equal bands of bins
    1..n//2 (the DC bin is the mean, a feature of its own)."""
    w, n, c = centered.shape
    if n < 2:
        return np.zeros((w, c, n_bands))
    spectrum = np.fft.rfft(centered, axis=1)[:, 1:, :]  # (W, n//2, c), DC dropped
    power = (spectrum.real**2 + spectrum.imag**2) / n
    starts, empty = _band_edges(power.shape[1], n_bands)
    sums = np.add.reduceat(power, starts, axis=1)  # (W, n_bands, c); an empty band repeats
    if empty.any():
        sums[:, empty, :] = 0.0
    return sums.transpose(0, 2, 1)  # (W, c, n_bands)


@functools.lru_cache(maxsize=256)
def _band_edges(n_bins: int, n_bands: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(band start bins, which bands are empty) for n_bins bins split into n_bands."""
    edges = np.linspace(0, n_bins, n_bands + 1).round().astype(int)  # (n_bands + 1,)
    starts = np.minimum(edges[:-1], n_bins - 1)  # reduceat needs starts < n_bins
    return starts, np.diff(edges) == 0


FeatureJob = tuple[Sequence[Window], Sequence[str], int]
"""(windows, features, n_bands) of one session."""


def extract_windows(jobs: Sequence[FeatureJob]) -> list[list[F64]]:
    """The feature vectors of every job's windows, in order: windows of the same length,
    channel count and feature choice (across jobs) go through one `extract_batch` call, so
    a step that closes windows in many sessions costs a few numpy calls, not a few per
    window."""
    out: list[list[F64]] = [[np.empty(0)] * len(windows) for windows, _, _ in jobs]
    buckets: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    for j, (windows, features, n_bands) in enumerate(jobs):
        for i, window in enumerate(windows):
            key = (window.values.shape, tuple(features), n_bands)
            buckets.setdefault(key, []).append((j, i))
    for (_, features, n_bands), members in buckets.items():
        chosen = [jobs[j][0][i] for j, i in members]
        times = np.stack([w.times for w in chosen])  # (W, n)
        values = np.stack([w.values for w in chosen])  # (W, n, c)
        rows = extract_batch(times, values, features, n_bands)  # (W, d)
        for row, (j, i) in zip(rows, members, strict=True):
            out[j][i] = row
    return out
