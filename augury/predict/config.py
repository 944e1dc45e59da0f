"""model.toml: what a model is, how to run it, how to prepare its inputs and read its outputs.

A repository entry is `models/NAME/model.toml` plus numbered version folders. The file is
parsed into frozen dataclasses here; every error names the field and the fix, and nothing
below this module ever sees raw TOML. Files written by `augury.elm.io.save_model` (runtime
"elm", `features` on the input, `labels`/`targets` on outputs) are valid as they are.

    name = "fraud"
    task = "classification"          # classification | regression | embedding
    runtime = "elm"                  # onnx | elm | torch
    labels = ["legit", "fraud"]      # optional: names for the probability columns

    [[inputs]]                       # what clients send (protocol tensors)
    name = "input"
    dtype = "float32"                # numpy names or KServe names (FP32, BYTES, ...)
    shape = [-1, 110]                # -1: any size; the first dimension is the batch

    [[outputs]]
    name = "probabilities"
    dtype = "float32"
    shape = [-1, 2]

    [preprocess]                     # optional; see preprocess/*.py for each kind's fields
    kind = "tabular"                 # tabular | image | text

    [postprocess]                    # optional
    softmax = false
    top_k = 0
    threshold = 0.5                  # binary classifiers: label = p[:, 1] >= threshold
    units = "USD"                    # regression

    [batching]
    max_batch_size = 64
    max_queue_delay_ms = 1.0
    preferred_batch_sizes = [32, 64]
    instances = 1
    max_queue_size = 1024
    timeout_ms = 10000
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from augury.predict.errors import ConfigError

MODEL_TOML = "model.toml"
TASKS = ("classification", "regression", "embedding")
RUNTIMES = ("onnx", "elm", "torch")

# KServe v2 datatype <-> numpy dtype name.
KSERVE_TO_NUMPY = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "bytes",
}
NUMPY_TO_KSERVE = {v: k for k, v in KSERVE_TO_NUMPY.items()} | {"string": "BYTES"}


def kserve_datatype(dtype: str) -> str:
    """The KServe datatype of a numpy dtype name ("float32" -> "FP32")."""
    return NUMPY_TO_KSERVE[dtype]


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output tensor."""

    name: str
    """Tensor name used by the protocol."""
    dtype: str
    """numpy dtype name, or "bytes" for strings and encoded files (KServe BYTES)."""
    shape: tuple[int, ...]
    """Dimensions; -1 is variable. The first is the batch dimension."""
    labels: tuple[str, ...] = ()
    """Classification outputs: the class of each column."""
    features: tuple[str, ...] = ()
    """Tabular inputs: the name of each column."""
    targets: tuple[str, ...] = ()
    """Regression outputs: the name of each column."""

    @property
    def datatype(self) -> str:
        return kserve_datatype(self.dtype)


@dataclass(frozen=True)
class PostprocessConfig:
    """Declared output processing, applied to the whole batch at once."""

    softmax: bool = False
    """Apply softmax to the runtime's scores (off when the runtime gives probabilities)."""
    top_k: int = 0
    """Also answer the k most likely labels and their probabilities (0: off)."""
    threshold: float | None = None
    """Binary classifiers: label is the positive class when p[:, 1] >= threshold."""
    units: str | None = None
    """Regression: units of the prediction, returned in the output's parameters."""
    normalize: bool = False
    """Embeddings: scale each vector to unit length."""


@dataclass(frozen=True)
class BatchingConfig:
    """Dynamic batching: requests are merged into one runtime call."""

    max_batch_size: int = 64
    """Most rows in one runtime call (1 turns batching off)."""
    max_queue_delay_ms: float = 0.0
    """How long the oldest request may wait for batch-mates (0: take what is queued)."""
    preferred_batch_sizes: tuple[int, ...] = ()
    """Batch sizes that are dispatched at once when reached."""
    instances: int = 1
    """Runtime calls that may run at the same time (threads)."""
    max_queue_size: int = 1024
    """Requests waiting beyond this are refused with 429."""
    timeout_ms: float = 10_000.0
    """A request not answered within this time fails (and leaves the queue)."""


@dataclass(frozen=True)
class ModelConfig:
    """A parsed, validated model.toml."""

    name: str
    task: str
    runtime: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...] = ()
    """Class labels (from the top level or the probabilities output)."""
    preprocess: dict[str, Any] = field(default_factory=dict)
    """The raw [preprocess] table, validated by the preprocessor of its `kind`."""
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    runtime_options: dict[str, Any] = field(default_factory=dict)
    """The raw [runtime_options] table (e.g. file, threads), read by the runtime."""
    description: str = ""

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)


def load_config(folder: str | Path) -> ModelConfig:
    """Parse and validate `folder/model.toml`; ConfigError names the field that is wrong."""
    path = Path(folder) / MODEL_TOML
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing; every model folder needs a model.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(raw, default_name=Path(folder).name, source=str(path))


def parse_config(raw: dict[str, Any], default_name: str, source: str = "model.toml") -> ModelConfig:
    """Validate a model.toml dict."""
    r = _Reader(raw, source)
    name = r.string("name", default_name)
    task = r.choice("task", TASKS)
    runtime = r.choice("runtime", RUNTIMES)
    inputs = tuple(_tensor(x, f"inputs[{i}]", r) for i, x in enumerate(r.tables("inputs")))
    outputs = tuple(_tensor(x, f"outputs[{i}]", r) for i, x in enumerate(r.tables("outputs")))
    if not inputs:
        r.fail("inputs", "declare at least one [[inputs]] table with name, dtype and shape")
    if not outputs:
        r.fail("outputs", "declare at least one [[outputs]] table with name, dtype and shape")
    for kind, specs in (("inputs", inputs), ("outputs", outputs)):
        names = [t.name for t in specs]
        if len(set(names)) != len(names):
            r.fail(kind, f"names must be unique, got {names}")
    labels = tuple(str(x) for x in r.array("labels", []))
    if not labels:
        labels = next((t.labels for t in outputs if t.labels), ())
    preprocess = r.table("preprocess")
    if preprocess and preprocess.get("kind") not in ("tabular", "image", "text"):
        r.fail("preprocess.kind", f"must be tabular, image or text, got {preprocess.get('kind')!r}")
    return ModelConfig(
        name=name,
        task=task,
        runtime=runtime,
        inputs=inputs,
        outputs=outputs,
        labels=labels,
        preprocess=preprocess,
        postprocess=_postprocess(r.table("postprocess"), r),
        batching=_batching(r.table("batching"), r),
        runtime_options=r.table("runtime_options"),
        description=r.string("description", ""),
    )


def _tensor(raw: dict[str, Any], where: str, r: _Reader) -> TensorSpec:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        r.fail(f"{where}.name", f"must be a non-empty string, got {name!r}")
    shape = raw.get("shape")
    dtype = _dtype(raw.get("dtype"), f"{where}.dtype", r)
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and (d == -1 or d > 0) for d in shape)
    ):
        r.fail(f"{where}.shape", f"must be a list of positive sizes or -1, got {shape!r}")
    return TensorSpec(
        name=name,
        dtype=dtype,
        shape=tuple(shape),
        labels=tuple(str(x) for x in raw.get("labels", [])),
        features=tuple(str(x) for x in raw.get("features", [])),
        targets=tuple(str(x) for x in raw.get("targets", [])),
    )


def _dtype(value: Any, where: str, r: _Reader) -> str:
    if isinstance(value, str):
        if value.upper() in KSERVE_TO_NUMPY:
            return KSERVE_TO_NUMPY[value.upper()]
        if value in ("string", "bytes", "str"):
            return "bytes"
        if value in NUMPY_TO_KSERVE:
            return str(np.dtype(value).name)
    r.fail(where, f"unknown dtype {value!r}; use e.g. float32, int64, bytes or FP32, INT64, BYTES")


def _postprocess(raw: dict[str, Any], r: _Reader) -> PostprocessConfig:
    p = _Reader(raw, r.source, "postprocess.")
    threshold = raw.get("threshold")
    if threshold is not None and not (isinstance(threshold, int | float) and 0 <= threshold <= 1):
        p.fail("threshold", f"must be a number in [0, 1], got {threshold!r}")
    p.known({"softmax", "top_k", "threshold", "units", "normalize"})
    return PostprocessConfig(
        softmax=p.boolean("softmax", False),
        top_k=p.integer("top_k", 0, minimum=0),
        threshold=None if threshold is None else float(threshold),
        units=raw.get("units"),
        normalize=p.boolean("normalize", False),
    )


def _batching(raw: dict[str, Any], r: _Reader) -> BatchingConfig:
    b = _Reader(raw, r.source, "batching.")
    b.known(set(BatchingConfig.__dataclass_fields__))
    max_batch = b.integer("max_batch_size", 64, minimum=1)
    preferred = tuple(int(x) for x in b.array("preferred_batch_sizes", []))
    if any(not 1 <= x <= max_batch for x in preferred):
        b.fail("preferred_batch_sizes", f"sizes must be in 1..max_batch_size, got {preferred}")
    return BatchingConfig(
        max_batch_size=max_batch,
        max_queue_delay_ms=b.number("max_queue_delay_ms", 0.0, minimum=0.0),
        preferred_batch_sizes=preferred,
        instances=b.integer("instances", 1, minimum=1),
        max_queue_size=b.integer("max_queue_size", 1024, minimum=1),
        timeout_ms=b.number("timeout_ms", 10_000.0, minimum=1.0),
    )


class _Reader:
    """Typed field access with errors naming `source` and the field."""

    def __init__(self, raw: dict[str, Any], source: str, prefix: str = "") -> None:
        self.raw, self.source, self.prefix = raw, source, prefix

    def fail(self, key: str, why: str) -> NoReturn:
        raise ConfigError(f"{self.source}: field '{self.prefix}{key}' {why}")

    def known(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.raw) - allowed)
        if unknown:
            self.fail(unknown[0], f"is not a known field; expected one of {sorted(allowed)}")

    def string(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str) or (not value and default is None):
            self.fail(key, f"must be a string, got {value!r}")
        return str(value)

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.raw.get(key)
        if value not in options:
            self.fail(key, f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return bool(value)

    def integer(self, key: str, default: int, minimum: int) -> int:
        value = self.raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(key, f"must be an integer >= {minimum}, got {value!r}")
        return int(value)

    def number(self, key: str, default: float, minimum: float) -> float:
        value = self.raw.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum:
            self.fail(key, f"must be a number >= {minimum}, got {value!r}")
        return float(value)

    def array(self, key: str, default: list[Any]) -> list[Any]:
        value = self.raw.get(key, default)
        if not isinstance(value, list):
            self.fail(key, f"must be a list, got {value!r}")
        return list(value)

    def tables(self, key: str) -> list[dict[str, Any]]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            self.fail(key, "must be an array of tables ([[" + key + "]])")
        return list(value)

    def table(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"must be a table ([{key}])")
        return dict(value)
