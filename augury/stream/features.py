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
from collections.abc import Sequence
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
    return _extract(times, np.ascontiguousarray(values.transpose(0, 2, 1)), features, n_bands)


def _extract(times: F64, signals: F64, features: Sequence[str], n_bands: int) -> F64:
    """`extract_batch` of signals (W, c, n): each channel's samples contiguous.

    A streaming step calls this with a handful of windows, so its cost is the number of numpy
    calls, not the arithmetic: every reduction runs along the contiguous last axis, each
    feature is written straight into its columns of one output array, and the band energies
    are one FFT and one product with a band-membership matrix. Products go through
    `np.matmul`, which computes each window on its own, so a window's features do not depend
    on which windows share the call."""
    w, c, n = signals.shape
    width = {name: n_bands if name == "bands" else 1 for name in features}
    table = np.empty((w, c, sum(width.values())))  # (W, c, k): channel-major once flattened
    mean = np.add.reduce(signals, axis=2) / n  # (W, c)
    centered = signals - mean[:, :, None]  # (W, c, n)
    var = np.add.reduce(centered * centered, axis=2) / n  # (W, c)
    column = 0
    for name in features:
        out = table[:, :, column : column + width[name]]
        column += width[name]
        if name == "mean":
            out[:, :, 0] = mean
        elif name == "std":
            np.sqrt(var, out=out[:, :, 0])
        elif name == "min":
            np.minimum.reduce(signals, axis=2, out=out[:, :, 0])
        elif name == "max":
            np.maximum.reduce(signals, axis=2, out=out[:, :, 0])
        elif name == "rms":  # sqrt(mean(x^2)), as mean^2 + var: no cancellation
            np.sqrt(mean * mean + var, out=out[:, :, 0])
        elif name == "slope":
            out[:, :, 0] = _slope(times, centered)
        else:  # bands
            out[...] = band_energies(centered, n_bands)
    return table.reshape(w, -1)


def _slope(times: F64, centered: F64) -> F64:
    """(W, c) least-squares slopes of centered signals (W, c, n) against times (W, n):
    sum((t - t̄)(x - x̄)) / sum((t - t̄)^2), 0 where the window has one event or all its
    times are equal."""
    dt = times - (np.add.reduce(times, axis=1) / times.shape[1])[:, None]  # (W, n)
    denom = np.add.reduce(dt * dt, axis=1)  # (W,)
    num = np.matmul(centered, dt[:, :, None])[:, :, 0]  # (W, c)
    if np.all(denom > 0.0):
        return num / denom[:, None]
    ok = denom > 0.0
    return np.where(ok[:, None], num / np.where(ok, denom, 1.0)[:, None], 0.0)


def band_energies(centered: F64, n_bands: int) -> F64:
    """(W, c, n_bands) energies of de-meaned signals (W, c, n) in equal bands of bins
    1..n//2 (the DC bin is the mean, a feature of its own)."""
    w, c, n = centered.shape
    if n < 2:
        return np.zeros((w, c, n_bands))
    power = np.abs(np.fft.rfft(centered, axis=2))  # (W, c, n//2 + 1)
    power *= power
    return np.matmul(power, _band_matrix(n, n_bands))  # (W, c, n_bands)


@functools.lru_cache(maxsize=256)
def _band_matrix(n: int, n_bands: int) -> F64:
    """(n//2 + 1, n_bands): 1/n where rfft bin f (f >= 1) falls in band b; bins 1..n//2
    split into n_bands equal runs by index (an empty run, when bands outnumber bins, is a
    band of zeros); the DC row is zero."""
    n_bins = n // 2
    edges = np.linspace(0, n_bins, n_bands + 1).round().astype(int)  # (n_bands + 1,)
    matrix = np.zeros((n_bins + 1, n_bands))
    for b in range(n_bands):
        matrix[1 + edges[b] : 1 + edges[b + 1], b] = 1.0 / n
    matrix.setflags(write=False)
    return matrix


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
        times = np.array([w.times for w in chosen])  # (W, n)
        signals = np.array([w.values.T for w in chosen])  # (W, c, n)
        rows = _extract(times, signals, features, n_bands)  # (W, d)
        for row, (j, i) in zip(rows, members, strict=True):
            out[j][i] = row
    return out
