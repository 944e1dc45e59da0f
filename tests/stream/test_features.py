"""Window features against plain per-channel loops (np.polyfit, a direct DFT)."""

from __future__ import annotations

import numpy as np
import pytest

from augury.stream.features import FEATURES, check_features, extract, feature_names


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
