from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from augury.elm.ridge import GramStats, fit_ridge, resolve_solver, solve_dual


def _problem(rng: np.random.Generator, n: int, L: int, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    H = np.tanh(rng.normal(size=(n, L)))
    T = H[:, :k] @ rng.normal(size=(k, k)) + 0.1 * rng.normal(size=(n, k)) + 2.0
    return H, T


@pytest.mark.parametrize("solver", ["primal", "dual"])
@pytest.mark.parametrize(("n", "L"), [(200, 40), (30, 90)])
def test_closed_form_equals_sklearn_ridge(
    solver: str, n: int, L: int, rng: np.random.Generator
) -> None:
    H, T = _problem(rng, n, L)
    beta, intercept, _ = fit_ridge(H, T, 0.7, solver)
    ref = Ridge(alpha=0.7, fit_intercept=True, solver="svd").fit(H, T)
    np.testing.assert_allclose(beta, ref.coef_.T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(intercept, ref.intercept_, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_weighted_equals_sklearn_ridge_with_sample_weight(
    solver: str, rng: np.random.Generator
) -> None:
    H, T = _problem(rng, 60, 20)
    w = rng.uniform(0.1, 3.0, size=60)
    beta, intercept, _ = fit_ridge(H, T, 0.3, solver, w)
    ref = Ridge(alpha=0.3, solver="svd").fit(H, T, sample_weight=w)
    np.testing.assert_allclose(beta, ref.coef_.T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(intercept, ref.intercept_, rtol=1e-7, atol=1e-9)


def test_primal_equals_normal_equations_by_lstsq(rng: np.random.Generator) -> None:
    """Independent route: stack sqrt(alpha) I under the centred H and solve by least squares."""
    H, T = _problem(rng, 150, 25)
    alpha = 2.5
    Hc, Tc = H - H.mean(axis=0), T - T.mean(axis=0)
    stacked = np.vstack([Hc, np.sqrt(alpha) * np.eye(25)])
    target = np.vstack([Tc, np.zeros((25, T.shape[1]))])
    expected = np.linalg.lstsq(stacked, target, rcond=None)[0]
    beta, _, _ = fit_ridge(H, T, alpha, "primal")
    np.testing.assert_allclose(beta, expected, rtol=1e-8, atol=1e-10)


def test_gram_statistics_add_and_subtract_exactly(rng: np.random.Generator) -> None:
    H, T = _problem(rng, 90, 12)
    parts = [GramStats.from_batch(H[s], T[s]) for s in (slice(0, 20), slice(20, 70), slice(70, 90))]
    total = parts[0] + parts[1] + parts[2]
    whole = GramStats.from_batch(H, T)
    for a, b in zip(total.solve(0.5), whole.solve(0.5), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    left = whole - parts[1]
    ref = GramStats.from_batch(np.vstack([H[:20], H[70:]]), np.vstack([T[:20], T[70:]]))
    np.testing.assert_allclose(left.hth, ref.hth, rtol=1e-10, atol=1e-10)
    assert left.weight == 40


def test_select_restricts_to_units(rng: np.random.Generator) -> None:
    H, T = _problem(rng, 80, 10)
    units = np.array([1, 4, 7])
    a = GramStats.from_batch(H, T).select(units).solve(0.2)
    b = GramStats.from_batch(H[:, units], T).solve(0.2)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-10)


def test_mismatched_statistics_and_bad_alpha(rng: np.random.Generator) -> None:
    H, T = _problem(rng, 20, 5)
    with pytest.raises(ValueError, match="share the hidden layer"):
        GramStats.from_batch(H, T) + GramStats.from_batch(H[:, :4], T)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        fit_ridge(H, T, 0.0)
    with pytest.raises(ValueError, match="unknown solver"):
        resolve_solver("qr", 10, 10)


def test_auto_solver_picks_the_smaller_system() -> None:
    assert resolve_solver("auto", 100, 500) == "dual"
    assert resolve_solver("auto", 5000, 500) == "primal"


def test_dual_with_more_units_than_rows_interpolates_less_as_alpha_grows(
    rng: np.random.Generator,
) -> None:
    H, T = _problem(rng, 20, 200)
    small = solve_dual(H, T, 1e-6)
    large = solve_dual(H, T, 1e3)
    fit_small = H @ small[0] + small[1]
    assert np.abs(fit_small - T).max() < 1e-3  # n < L: nearly interpolates
    assert np.linalg.norm(large[0]) < np.linalg.norm(small[0])
