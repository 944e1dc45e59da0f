"""Reading CSV or Parquet tables into checked feature matrices, with errors that say the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Dataset:
    """Features and (optionally) targets taken from a table."""

    X: NDArray[np.float64]
    """(n, d) features."""
    y: NDArray[Any] | None
    """(n,) targets, or None when the table has no target column."""
    feature_names: list[str]
    """Column name of each feature, in order."""


def read_table(path: str | Path) -> pa.Table:
    """A CSV (.csv, .csv.gz) or Parquet (.parquet, .pq) file as an Arrow table."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such data file: {p}")
    suffix = p.suffixes[-2] if p.suffix == ".gz" and len(p.suffixes) > 1 else p.suffix
    kind = READERS.get(suffix.lower())
    if kind is None:
        raise ValueError(f"cannot read {p.name}: use a .csv or .parquet file")
    try:
        return pacsv.read_csv(p) if kind == "csv" else pq.read_table(p)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"cannot parse {p}: {exc}") from None


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _missing(column: pa.ChunkedArray) -> int:
    count = column.null_count
    if pa.types.is_floating(column.type):
        count += pc.sum(pc.is_nan(column)).as_py() or 0
    return int(count)


def to_dataset(
    table: pa.Table,
    target: str | None,
    task: str | None = None,
    features: list[str] | None = None,
    drop: tuple[str, ...] = (),
) -> Dataset:
    """Split a table into checked features and target.

    `features` selects columns by name (a saved model's inputs); by default every column but
    the target and `drop`. Raises ValueError for a missing column, a non-numeric feature,
    missing values, or a classification target with a single class.
    """
    names = table.column_names
    if target is not None and target not in names:
        raise ValueError(f"target column {target!r} not found; columns are: {_listing(names)}")
    unknown = [c for c in (*(features or ()), *drop) if c not in names]
    if unknown:
        raise ValueError(f"columns {unknown} not found in the data; columns are: {_listing(names)}")
    cols = features or [c for c in names if c != target and c not in drop]
    if not cols:
        raise ValueError("no feature columns left: the table has only the target column")
    text = [c for c in cols if not _is_numeric(table[c].type)]
    if text:
        raise ValueError(
            f"non-numeric feature columns {text}: encode them as numbers first or leave them "
            "out (--drop " + " --drop ".join(text) + ")"
        )
    gaps = {c: n for c in cols if (n := _missing(table[c]))}
    if gaps:
        raise ValueError(
            f"missing values (NaN or empty) in feature columns {gaps}: impute them or drop "
            "those rows or columns"
        )
    X = np.column_stack([table[c].to_numpy().astype(np.float64) for c in cols])
    y = None if target is None else _target(table[target], target, task)
    return Dataset(X, y, list(cols))


def _target(column: pa.ChunkedArray, name: str, task: str | None) -> NDArray[Any]:
    if _missing(column):
        raise ValueError(f"target column {name!r} has {_missing(column)} missing values; drop them")
    values: NDArray[Any] = np.asarray(column.to_numpy())
    if task == "regression":
        if not _is_numeric(column.type):
            raise ValueError(f"regression target {name!r} must be numeric, got {column.type}")
        return values.astype(np.float64)
    if task == "classification":
        labels = np.unique(values)
        if labels.shape[0] < 2:
            raise ValueError(
                f"target column {name!r} has a single class ({labels.tolist()}); classification "
                "needs at least two"
            )
        if labels.shape[0] > max(20, values.shape[0] // 4):
            raise ValueError(
                f"target column {name!r} has {labels.shape[0]} distinct values in "
                f"{values.shape[0]} rows: it looks continuous; use --task regression"
            )
        if values.dtype.kind == "f":
            if not np.all(values == np.round(values)):
                raise ValueError(
                    f"target column {name!r} holds fractional numbers; class labels must be "
                    "integers or text (or use --task regression)"
                )
            return values.astype(np.int64)  # 0.0/1.0 labels read from CSV as floats
    return values if values.dtype.kind != "O" else values.astype(str)


def _listing(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
