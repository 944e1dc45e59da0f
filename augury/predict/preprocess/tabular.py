"""Tabular input: named features in a fixed order, defaults, range checks, standardization.

    [preprocess]
    kind = "tabular"
    input = "input"                  # the (n, d) matrix input, columns in `features` order
    output = "input"                 # the runtime's input name (default: same as input)
    [[preprocess.features]]
    name = "amount"
    required = true                  # false: NaN (or a missing per-feature tensor) -> default
    default = 0.0
    min = 0.0                        # range checks; out-of-range values are refused by name
    max = 1e6
    mean = 12.5                      # standardization: (x - mean) / std, both or neither
    std = 3.0

Clients send either the matrix, or one (n,) tensor per feature named after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from augury.predict.config import ModelConfig
from augury.predict.errors import ConfigError, InvalidInput


@dataclass(frozen=True)
class Feature:
    name: str
    required: bool = True
    default: float = 0.0
    min: float = -math.inf
    max: float = math.inf
    mean: float = 0.0
    std: float = 1.0


class TabularPreprocessor:
    """Builds the (n, d) float32 matrix of one request, checking every column by name."""

    def __init__(self, features: list[Feature], input_name: str, output_name: str) -> None:
        self.features = features
        self.names = [f.name for f in features]
        self.input_name, self.output_name = input_name, output_name
        self.required = np.array([f.required for f in features])
        self.default = np.array([f.default for f in features], np.float32)
        # float32 like the data: float64 bounds would make a float64 copy of every batch.
        self.low = np.array([f.min for f in features], np.float32)
        self.high = np.array([f.max for f in features], np.float32)
        self.mean = np.array([f.mean for f in features], np.float32)
        self.inv_std = np.array([1.0 / f.std for f in features], np.float32)
        self.standardize = any(f.mean != 0.0 or f.std != 1.0 for f in features)

    @classmethod
    def from_table(cls, table: dict[str, Any], config: ModelConfig, folder: Path) -> Any:
        input_name = str(table.get("input", config.inputs[0].name))
        spec = config.input(input_name)
        raw = table.get("features")
        if raw is None and spec is not None and spec.features:
            raw = [{"name": n} for n in spec.features]
        if not isinstance(raw, list) or not raw:
            raise ConfigError("field 'preprocess.features' must list [[preprocess.features]]")
        features = [_feature(f, i) for i, f in enumerate(raw)]
        if spec is not None and spec.shape[-1] not in (-1, len(features)):
            raise ConfigError(
                f"field 'preprocess.features' has {len(features)} features but input "
                f"{input_name!r} has shape {list(spec.shape)}"
            )
        return cls(features, input_name, str(table.get("output", input_name)))

    def describe(self) -> list[dict[str, Any]]:
        """The features in column order, as model metadata shows them: name, required, the
        default of an optional one and the declared range (finite bounds only)."""
        out: list[dict[str, Any]] = []
        for f in self.features:
            item: dict[str, Any] = {"name": f.name, "required": f.required}
            if not f.required:
                item["default"] = f.default
            item |= {k: v for k, v in (("min", f.min), ("max", f.max)) if math.isfinite(v)}
            out.append(item)
        return out

    def accepts(self) -> set[str]:
        """Input names a request may use: the matrix, or one tensor per feature."""
        return {self.input_name, *self.names}

    def __call__(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        X = self._matrix(inputs)  # (n, d), NaN where a value is missing
        missing = np.isnan(X)
        if missing.any():
            bad = missing & self.required
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise InvalidInput(
                    f"feature {self.names[col]!r} is required but missing or NaN (row {row})"
                )
            X = np.where(missing, self.default, X)
        low, high = self.low > X, self.high < X
        out = low | high | np.isinf(X)
        if out.any():
            row, col = np.argwhere(out)[0]
            f = self.features[col]
            raise InvalidInput(
                f"feature {f.name!r} = {X[row, col]} (row {row}) is outside its range "
                f"[{f.min}, {f.max}]"
            )
        if self.standardize:
            X = (X - self.mean) * self.inv_std
        return {self.output_name: np.ascontiguousarray(X, dtype=np.float32)}

    def _matrix(self, inputs: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        if self.input_name in inputs:
            X = np.asarray(inputs[self.input_name], dtype=np.float32)
            if X.ndim == 1:
                X = X[None, :]
            if X.ndim != 2 or X.shape[1] != len(self.names):
                raise InvalidInput(
                    f"input {self.input_name!r} must have shape [n, {len(self.names)}] "
                    f"(features {self.names[0]!r}..{self.names[-1]!r}), got {list(X.shape)}"
                )
            return X
        unknown = sorted(set(inputs) - set(self.names))
        if unknown:
            raise InvalidInput(f"unknown feature {unknown[0]!r}; the model takes {self.names}")
        rows = {np.asarray(v).reshape(-1).shape[0] for v in inputs.values()}
        if len(rows) > 1:
            raise InvalidInput(f"feature tensors have different lengths {sorted(rows)}")
        n = rows.pop() if rows else 0
        X = np.full((n, len(self.names)), np.nan, np.float32)
        for j, name in enumerate(self.names):
            if name in inputs:
                X[:, j] = np.asarray(inputs[name], dtype=np.float32).reshape(-1)
        return X


def _feature(raw: Any, i: int) -> Feature:
    where = f"preprocess.features[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ConfigError(f"field '{where}.name' must be a string")
    known = set(Feature.__dataclass_fields__)
    extra = sorted(set(raw) - known)
    if extra:
        raise ConfigError(f"field '{where}.{extra[0]}' is not known; expected {sorted(known)}")
    values: dict[str, Any] = {"name": raw["name"]}
    for key in ("default", "min", "max", "mean", "std"):
        if key in raw:
            v = raw[key]
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise ConfigError(f"field '{where}.{key}' must be a number, got {v!r}")
            values[key] = float(v)
    if "required" in raw:
        if not isinstance(raw["required"], bool):
            raise ConfigError(f"field '{where}.required' must be true or false")
        values["required"] = raw["required"]
    f = Feature(**values)
    if not f.std > 0:
        raise ConfigError(f"field '{where}.std' must be > 0, got {f.std}")
    if f.min > f.max:
        raise ConfigError(f"field '{where}.min' ({f.min}) is above max ({f.max})")
    return f
