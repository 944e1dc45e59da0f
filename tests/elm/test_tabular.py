from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from augury.elm.tabular import read_table, to_dataset


def _table() -> pa.Table:
    return pa.table({"a": [1.0, 2.0, 3.0, 4.0], "b": [1, 0, 1, 1], "label": ["x", "y", "x", "y"]})


def test_csv_and_parquet_read_alike(tmp_path: Path) -> None:
    pacsv.write_csv(_table(), tmp_path / "t.csv")
    pq.write_table(_table(), tmp_path / "t.parquet")
    a = to_dataset(read_table(tmp_path / "t.csv"), "label", "classification")
    b = to_dataset(read_table(tmp_path / "t.parquet"), "label", "classification")
    np.testing.assert_array_equal(a.X, b.X)
    assert a.feature_names == ["a", "b"] and list(a.y) == ["x", "y", "x", "y"]  # type: ignore[arg-type]


def test_features_are_selected_by_name_in_the_models_order() -> None:
    data = to_dataset(_table(), None, features=["b", "a"])
    np.testing.assert_array_equal(data.X[:, 0], [1, 0, 1, 1])
    assert data.y is None


@pytest.mark.parametrize(
    ("table", "target", "task", "match"),
    [
        (
            _table(),
            "missing",
            "classification",
            "target column 'missing' not found; columns are: a, b, label",
        ),
        (
            pa.table({"a": ["u", "v"], "y": [0, 1]}),
            "y",
            "classification",
            r"non-numeric feature columns \['a'\].*--drop a",
        ),
        (
            pa.table({"a": [1.0, None, float("nan")], "y": [0, 1, 0]}),
            "y",
            "classification",
            r"missing values .*\{'a': 2\}",
        ),
        (pa.table({"a": [1.0, 2.0], "y": [1, 1]}), "y", "classification", "single class"),
        (pa.table({"a": [1.0, 2.0], "y": [0.5, 1.5]}), "y", "classification", "fractional"),
        (pa.table({"a": [1.0, 2.0], "y": ["p", "q"]}), "y", "regression", "must be numeric"),
        (pa.table({"a": [1.0, 2.0], "y": [1.0, None]}), "y", "regression", "1 missing values"),
        (pa.table({"y": [1.0, 2.0]}), "y", "regression", "no feature columns"),
    ],
)
def test_clear_errors(table: pa.Table, target: str, task: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        to_dataset(table, target, task)


def test_continuous_target_for_classification_is_refused() -> None:
    table = pa.table({"a": np.arange(200.0), "y": np.arange(200)})
    with pytest.raises(ValueError, match="looks continuous; use --task regression"):
        to_dataset(table, "y", "classification")


def test_missing_model_feature_and_unknown_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"columns \['c'\] not found"):
        to_dataset(_table(), "label", features=["a", "c"])
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "none.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"use a \.csv or \.parquet"):
        read_table(tmp_path / "x.json")
