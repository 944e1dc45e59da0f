"""The predictive-model task: each row is a record of features; results are the model's
declared outputs (e.g. label and probabilities), computed over the whole chunk at once.

A model is a repository entry (`models/NAME/model.toml` + version folders) run through
`augury.predict.pipeline.Pipeline`, the same validation, preprocessing, runtime and
postprocessing the KServe endpoint uses. A chunk runs as one vectorized call; if it is refused
(a missing or out-of-range feature), it is split in halves until the rows at fault are alone,
so one bad row costs a few extra calls, not a per-row loop.
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


class PredictTask:
    """Runs chunks through a pipeline (in a worker thread, so reading overlaps compute)."""

    def __init__(self, pipeline: Pipeline, outputs: tuple[str, ...] = ()) -> None:
        self.pipeline = pipeline
        self.outputs = outputs
        spec = pipeline.config.inputs[0] if len(pipeline.config.inputs) == 1 else None
        self.matrix_features: list[str] | None = None
        """Feature columns stacked into the single input matrix (models without tabular
        preprocessing whose input declares `features`)."""
        if pipeline.preprocessor is None and spec is not None and spec.features:
            self.matrix_features = list(spec.features)
        self.matrix_name = spec.name if spec is not None else ""

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
        bad = {i for i, _ in errors}
        todo = np.array([i for i in range(n) if i not in bad], np.int64)
        done: list[tuple[NDArray[np.int64], InferResult]] = []
        if len(todo):
            self._predict(inputs, todo, done, errors)
        if not done:
            return ChunkResult([], np.zeros(0, np.int64), errors)
        done.sort(key=lambda d: int(d[0][0]))
        positions = np.concatenate([p for p, _ in done])
        names = self.outputs or tuple(self.pipeline.outputs)
        columns = {
            name: _column(np.concatenate([r.outputs[name] for _, r in done])) for name in names
        }
        return ChunkResult(pa.table(columns), positions, sorted(errors))

    def _inputs(self, table: pa.Table) -> dict[str, NDArray[Any]]:
        """Request tensors from the chunk's columns (missing values become NaN)."""
        if self.matrix_features is not None:
            cols = [_floats(table, name) for name in self.matrix_features]
            return {self.matrix_name: np.stack(cols, axis=1) if cols else np.zeros((0, 0))}
        inputs: dict[str, NDArray[Any]] = {}
        for name in table.column_names:
            if name not in self.pipeline.accepted:
                continue
            column = table[name]
            if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
                inputs[name] = np.asarray(column.to_pylist(), dtype=np.float32)
            else:
                inputs[name] = _floats(table, name)
        return inputs

    def _predict(
        self,
        inputs: dict[str, NDArray[Any]],
        positions: NDArray[np.int64],
        done: list[tuple[NDArray[np.int64], InferResult]],
        errors: list[tuple[int, str]],
    ) -> None:
        """Predict `positions`; on refusal bisect until the faulty rows are alone."""
        request = InferRequest({k: v[positions] for k, v in inputs.items()}, self.outputs)
        try:
            self.pipeline.validate(request)
            result = self.pipeline.execute([request])[0]
        except InvalidInput as exc:
            result = exc
        if isinstance(result, InferResult):
            done.append((positions, result))
        elif len(positions) == 1:
            errors.append((int(positions[0]), _reason(result)))
        elif isinstance(result, ValueError):
            half = len(positions) // 2
            self._predict(inputs, positions[:half], done, errors)
            self._predict(inputs, positions[half:], done, errors)
        else:
            raise result


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
    return table, sorted(errors.items())


def _floats(table: pa.Table, name: str) -> NDArray[np.float32]:
    """A column as float32 with NaN for missing values; InvalidInput naming it otherwise."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan, np.float32)
    column = table[name]
    try:
        values = pc.cast(column, pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InvalidInput(f"feature {name!r} must be numeric, got {column.type}") from None
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32)


def _reason(exc: Exception) -> str:
    """Per-row messages: the pipeline counts rows from 0 within the request, here always 0."""
    return str(exc).replace(" (row 0)", "").replace("at index [0, ", "at feature index [")


def _column(values: NDArray[Any]) -> pa.Array:
    """An output tensor as an Arrow column: (n,) as is, (n, k) as a fixed-size list."""
    if values.dtype == object:
        return pa.array(values.tolist(), type=pa.string())
    if values.ndim == 2:
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    return pa.array(values)
