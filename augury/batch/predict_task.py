"""The predictive-model task: each row is a record of features; results are the model's
declared outputs (e.g. label and probabilities), computed over the whole chunk at once.

A model is a repository entry (`models/NAME/model.toml` + version folders) run through
`augury.predict.pipeline.Pipeline`, the same validation, preprocessing, runtime and
postprocessing the KServe endpoint uses. A chunk runs as one vectorized call: its feature
columns go straight from Arrow into the model's (n, d) float32 matrix. If the call is refused
(a missing or out-of-range feature), the rows at fault are found with one vectorized check
(`RowScreen`), each gets the pipeline's own message from a call on that row alone, and the
rest run as one call again; whatever the check cannot foresee is found by splitting in halves.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from augury.batch.job import ChunkResult
from augury.batch.readers import Chunk
from augury.predict.config import MODEL_TOML, load_config
from augury.predict.errors import InvalidInput
from augury.predict.pipeline import InferRequest, InferResult, Pipeline
from augury.predict.preprocess.tabular import TabularPreprocessor

Done = list[tuple[NDArray[np.int64], InferResult]]
"""Predicted parts of a chunk: (row positions, their results)."""


def is_predictive_model(path: str | Path | None) -> bool:
    """A repository entry (a folder with model.toml) or one of its version folders."""
    if path is None:
        return False
    p = Path(path)
    return (p / MODEL_TOML).is_file() or (p.parent / MODEL_TOML).is_file()


def load_pipeline(path: str | Path) -> Pipeline:
    """The newest version of the entry `path`, or the version folder `path`."""
    p = Path(path)
    if (p / MODEL_TOML).is_file():
        versions = [int(v.name) for v in p.iterdir() if v.is_dir() and v.name.isdigit()]
        if not versions:
            raise ValueError(f"{p} has no numbered version folder (e.g. {p}/1)")
        entry, folder = p, p / str(max(versions))
    else:
        entry, folder = p.parent, p
    return Pipeline.load(load_config(entry), folder)


def predict_task(path: str | Path) -> PredictTask:
    """The task of the model at `path` (a picklable factory for remote workers)."""
    return PredictTask(load_pipeline(path))


class RowScreen:
    """Which rows of an (n, d) feature matrix the pipeline would refuse, in one pass.

    Tabular models: a required feature missing (NaN), or a present one outside [min, max] or
    infinite. Matrix models without preprocessing: any NaN or infinity. It only has to be
    right for the common faults: rows it misses are still found by splitting."""

    def __init__(self, pipeline: Pipeline) -> None:
        prep = pipeline.preprocessor
        self.tabular = prep if isinstance(prep, TabularPreprocessor) else None

    def bad_rows(self, X: NDArray[np.float32]) -> NDArray[np.bool_]:
        if self.tabular is None:
            return np.asarray(~np.isfinite(X).all(axis=1), dtype=bool)
        t = self.tabular
        missing = np.isnan(X)  # (n, d)
        low = t.low.astype(np.float32)  # float32 bounds: no float64 copy of X
        high = t.high.astype(np.float32)
        with np.errstate(invalid="ignore"):
            out = (low > X) | (high < X) | np.isinf(X)
        return np.asarray(((missing & t.required) | out).any(axis=1), dtype=bool)


class PredictTask:
    """Runs chunks through a pipeline (in a worker thread, so reading overlaps compute)."""

    def __init__(self, pipeline: Pipeline, outputs: tuple[str, ...] = ()) -> None:
        self.pipeline = pipeline
        self.outputs = outputs
        self.matrix_name, self.matrix_features = _matrix_layout(pipeline)
        self.screen = RowScreen(pipeline) if self.matrix_features is not None else None

    async def run_chunk(self, chunk: Chunk) -> ChunkResult:
        return await asyncio.to_thread(self.run_sync, chunk)

    def run_sync(self, chunk: Chunk) -> ChunkResult:
        errors: list[tuple[int, str]] = []
        try:
            table = chunk.as_table()
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in a JSONL column
            wanted = self.matrix_features or sorted(self.pipeline.accepted)
            table, errors = _checked_table(chunk.as_records(), wanted)
        n = table.num_rows
        try:
            inputs = self._inputs(table)
        except InvalidInput as exc:
            return ChunkResult([], np.zeros(0, np.int64), [(i, str(exc)) for i in range(n)])
        keep = np.ones(n, bool)
        keep[[i for i, _ in errors]] = False
        done: Done = []
        if keep.any():
            self._predict_screened(inputs, np.flatnonzero(keep), done, errors)
        if not done:
            return ChunkResult([], np.zeros(0, np.int64), sorted(errors))
        done.sort(key=lambda d: int(d[0][0]))
        positions = np.concatenate([p for p, _ in done])
        names = self.outputs or tuple(self.pipeline.outputs)
        columns = {name: _column(_joined([r.outputs[name] for _, r in done])) for name in names}
        return ChunkResult(pa.table(columns), positions, sorted(errors))

    def _inputs(self, table: pa.Table) -> dict[str, NDArray[Any]]:
        """Request tensors from the chunk's columns (missing values become NaN)."""
        column = table[self.matrix_name] if self.matrix_name in table.column_names else None
        if column is not None and _is_list(column.type):  # the matrix itself, one list a row
            return {self.matrix_name: np.asarray(column.to_pylist(), dtype=np.float32)}
        if self.matrix_features is not None:
            X = np.empty((table.num_rows, len(self.matrix_features)), np.float32)  # (n, d)
            for j, name in enumerate(self.matrix_features):
                X[:, j] = _floats(table, name)
            return {self.matrix_name: X}
        inputs: dict[str, NDArray[Any]] = {}
        for name in table.column_names:
            if name not in self.pipeline.accepted:
                continue
            column = table[name]
            if _is_list(column.type):
                inputs[name] = np.asarray(column.to_pylist(), dtype=np.float32)
            else:
                inputs[name] = _floats(table, name)
        return inputs

    def _predict_screened(
        self,
        inputs: dict[str, NDArray[Any]],
        positions: NDArray[np.int64],
        done: Done,
        errors: list[tuple[int, str]],
    ) -> None:
        """Predict `positions` in one call; if refused, set aside the rows the screen flags
        (each then answered alone, for its own message) and predict the rest."""
        result = self._call(inputs, positions)
        if isinstance(result, InferResult):
            done.append((positions, result))
            return
        if self.screen is None or len(positions) == 1:
            self._bisect(inputs, positions, result, done, errors)
            return
        bad = self.screen.bad_rows(inputs[self.matrix_name][positions])
        if not bad.any():
            self._bisect(inputs, positions, result, done, errors)
            return
        for p in positions[bad]:
            self._predict(inputs, p[None], done, errors)
        good = positions[~bad]
        if len(good):
            self._predict(inputs, good, done, errors)

    def _call(
        self, inputs: dict[str, NDArray[Any]], positions: NDArray[np.int64]
    ) -> InferResult | Exception:
        """One pipeline call on the rows `positions` (all rows: no copy)."""
        full = len(positions) == len(next(iter(inputs.values())))
        picked = inputs if full else {k: v[positions] for k, v in inputs.items()}
        request = InferRequest(picked, self.outputs)
        try:
            self.pipeline.validate(request)
            return self.pipeline.execute([request])[0]
        except InvalidInput as exc:
            return exc

    def _predict(
        self,
        inputs: dict[str, NDArray[Any]],
        positions: NDArray[np.int64],
        done: Done,
        errors: list[tuple[int, str]],
    ) -> None:
        result = self._call(inputs, positions)
        if isinstance(result, InferResult):
            done.append((positions, result))
        else:
            self._bisect(inputs, positions, result, done, errors)

    def _bisect(
        self,
        inputs: dict[str, NDArray[Any]],
        positions: NDArray[np.int64],
        failure: Exception,
        done: Done,
        errors: list[tuple[int, str]],
    ) -> None:
        """`positions` were refused with `failure`: split in halves until the rows at fault
        are alone. Errors that are not the input's fault (not ValueError) propagate."""
        if len(positions) == 1:
            errors.append((int(positions[0]), _reason(failure)))
        elif isinstance(failure, ValueError):
            half = len(positions) // 2
            self._predict(inputs, positions[:half], done, errors)
            self._predict(inputs, positions[half:], done, errors)
        else:
            raise failure


def _matrix_layout(pipeline: Pipeline) -> tuple[str, list[str] | None]:
    """(input name, feature columns) when a chunk can be sent as one (n, d) matrix: tabular
    preprocessing, or a single input declaring `features`; else (name, None)."""
    prep = pipeline.preprocessor
    if isinstance(prep, TabularPreprocessor):
        return prep.input_name, list(prep.names)
    spec = pipeline.config.inputs[0] if len(pipeline.config.inputs) == 1 else None
    if prep is None and spec is not None and spec.features:
        return spec.name, list(spec.features)
    return (spec.name if spec is not None else ""), None


def _checked_table(
    records: list[dict[str, Any]], names: list[str]
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """The `names` columns of records holding mixed types: numbers kept, anything else makes
    its row an error naming the field (the slow path, taken only when Arrow cannot type a
    column)."""
    errors: dict[int, str] = {}
    columns: dict[str, list[Any]] = {}
    present = {k for r in records for k in r}
    for name in (n for n in names if n in present):
        values: list[Any] = []
        for i, record in enumerate(records):
            v = record.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                errors.setdefault(i, f"field {name!r} must be a number, got {v!r}")
                v = None
            values.append(v)
        columns[name] = values
    table = pa.table({k: pa.array(v, type=pa.float64()) for k, v in columns.items()})
    if not columns:
        table = pa.table({"_": pa.nulls(len(records))}).drop_columns(["_"])  # keep n rows
    return table, sorted(errors.items())


def _floats(table: pa.Table, name: str) -> NDArray[np.float32]:
    """A column as float32 with NaN for missing values; InvalidInput naming it otherwise."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan, np.float32)
    column = table[name]
    try:
        if column.num_chunks == 1:
            column = column.chunk(0)  # an Array: to_numpy is zero-copy when it can be
        values = column if column.type == pa.float32() else pc.cast(column, pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InvalidInput(f"feature {name!r} must be numeric, got {column.type}") from None
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32)


def _is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind))


def _reason(exc: Exception) -> str:
    """Per-row messages: the pipeline counts rows from 0 within the request, here always 0."""
    return str(exc).replace(" (row 0)", "").replace("at index [0, ", "at feature index [")


def _joined(parts: list[NDArray[Any]]) -> NDArray[Any]:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _column(values: NDArray[Any]) -> pa.Array:
    """An output tensor as an Arrow column: (n,) as is, (n, k) as a fixed-size list."""
    if values.dtype == object:
        return pa.array(values, type=pa.string())  # from the object array: no Python list
    if values.ndim == 2:
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    return pa.array(values)
