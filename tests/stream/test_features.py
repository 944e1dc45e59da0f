"""Window features against plain per-channel loops (np.polyfit, a direct DFT)."""

from __future__ import annotations

import numpy as np
import pytest

from augury.stream.features import (
    FEATURES,
    check_features,
    extract,
    extract_batch,
    extract_windows,
    feature_names,
)
from augury.stream.windows import Window


def reference(times: np.ndarray, values: np.ndarray, n_bands: int) -> np.ndarray:
    out = []
    n = values.shape[0]
    for x in values.T:
        row = [x.mean(), x.std(), x.min(), x.max(), np.sqrt(np.mean(x**2))]
        row.append(np.polyfit(times, x, 1)[0])
        c = x - x.mean()
        k = np.arange(n)
        power = [
            abs(np.sum(c * np.exp(-2j * np.pi * f * k / n))) ** 2 / n for f in range(1, n // 2 + 1)
        ]
        edges = np.linspace(0, len(power), n_bands + 1).round().astype(int)
        row += [sum(power[edges[b] : edges[b + 1]]) for b in range(n_bands)]
        out += row
    return np.array(out)


@pytest.mark.parametrize(("n", "n_bands"), [(64, 4), (33, 3), (8, 2)])
def test_features_match_reference(n: int, n_bands: int) -> None:
    rng = np.random.default_rng(n)
    times = np.sort(rng.uniform(0, 2, n))
    values = rng.normal(size=(n, 3)) + np.sin(7 * times)[:, None]
    got = extract(times, values, FEATURES, n_bands)
    np.testing.assert_allclose(got, reference(times, values, n_bands), rtol=1e-9, atol=1e-9)
    assert got.shape == (len(feature_names(["a", "b", "c"], FEATURES, n_bands)),)


def test_band_energy_finds_the_tone() -> None:
    t = np.arange(64) / 64.0
    x = np.sin(2 * np.pi * 28 * t)[:, None]  # bin 28 of 32: the top band
    bands = extract(t, x, ["bands"], 4)
    assert np.argmax(bands) == 3 and bands[3] == pytest.approx(16.0)  # n/4 for a unit sine


def test_single_event_window_has_zero_slope() -> None:
    out = extract(np.array([1.0]), np.array([[2.0]]), ["mean", "slope", "bands"], 2)
    np.testing.assert_array_equal(out, [2.0, 0.0, 0.0, 0.0])


def test_names_and_validation() -> None:
    assert feature_names(["x"], ["mean", "bands"], 2) == ["x.mean", "x.band0", "x.band1"]
    with pytest.raises(ValueError, match="unknown feature 'kurtosis'"):
        check_features(["kurtosis"], 4)


def windows_of(times: np.ndarray, values: np.ndarray, starts: list[int], size: int) -> list[Window]:
    return [
        Window(
            k,
            times[s],
            times[s + size - 1],
            times[s : s + size],
            values[s : s + size],
            list(range(s, s + size)),
            None,
        )
        for k, s in enumerate(starts)
    ]


@pytest.mark.parametrize("stride", [1, 3, 8])
def test_batched_features_equal_per_window_reference(stride: int) -> None:
    rng = np.random.default_rng(stride)
    times = np.cumsum(rng.uniform(0.001, 0.02, 200))
    values = rng.normal(size=(200, 2)) * [1.0, 1e3] + [0.0, 5e3]
    windows = windows_of(times, values, list(range(0, 200 - 16 + 1, stride)), 16)
    batched = extract_batch(
        np.stack([w.times for w in windows]), np.stack([w.values for w in windows]), FEATURES, 3
    )
    for w, row in zip(windows, batched, strict=True):
        np.testing.assert_allclose(row, reference(w.times, w.values, 3), rtol=1e-9, atol=1e-6)


def test_extract_windows_groups_mixed_shapes_across_sessions() -> None:
    """Time windows of varying length and sessions with other channels or features: each
    vector equals the single-window extraction."""
    rng = np.random.default_rng(7)
    times = np.sort(rng.uniform(0, 10, 300))
    one, three = rng.normal(size=(300, 1)), rng.normal(size=(300, 3))
    starts = [0, 5, 9, 40, 41, 100]
    jobs = [
        (windows_of(times, one, starts, 12), FEATURES, 4),
        (windows_of(times, three, starts, 12), ("mean", "bands"), 2),
        (windows_of(times, one, starts, 7) + windows_of(times, one, [3], 1), FEATURES, 4),
        ([], FEATURES, 4),
    ]
    got = extract_windows(jobs)
    assert [len(rows) for rows in got] == [6, 6, 7, 0]
    for (windows, features, n_bands), rows in zip(jobs, got, strict=True):
        for w, row in zip(windows, rows, strict=True):
            np.testing.assert_array_equal(row, extract(w.times, w.values, features, n_bands))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_short_windows_with_more_bands_than_bins(n: int) -> None:
    rng = np.random.default_rng(n)
    times, values = np.arange(float(n)), rng.normal(size=(n, 2))
    got = extract(times, values, FEATURES, 4)
    np.testing.assert_allclose(got, reference(times, values, 4), rtol=1e-9, atol=1e-12)
