"""Saving ELMs as model-repository folders: safetensors weights, JSON metadata, no pickle.

Layout written by `save_model(model, "models/NAME")` (each save adds the next version):

    models/NAME/model.toml           how to serve NAME (rewritten by every save)
    models/NAME/1/model.safetensors  float64 tensors: mean (d,), scale (d,), weight (d, L),
                                     bias (L,), beta (L, k), intercept (k,)
    models/NAME/1/model.json         everything else needed to rebuild the estimator
    models/NAME/1/model.onnx         the same model as an ONNX graph (see onnx_export.py)

model.toml (TOML; one table per input and output):

    name = "NAME"                    # the folder name unless given
    task = "classification"          # or "regression"
    runtime = "elm"                  # load with augury.elm.io.load_model(version folder)
    version = 1                      # the version this file was written with
    files = ["model.safetensors", "model.json", "model.onnx"]

    [[inputs]]
    name = "input"
    dtype = "float32"
    shape = [-1, 30]                 # -1: any number of rows
    features = ["age", "bmi", ...]   # column order the model expects

    [[outputs]]                      # classification: probabilities, then label
    name = "probabilities"
    dtype = "float32"
    shape = [-1, 2]
    labels = [0, 1]                  # class label of each probability column
    [[outputs]]
    name = "label"
    dtype = "int64"                  # or "string"; absent for other label types
    shape = [-1]

    [[outputs]]                      # regression instead: one column per target
    name = "prediction"
    dtype = "float32"
    shape = [-1, 1]
    targets = ["progression"]
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from augury import __version__
from augury.elm.base import ELMBase, ELMConfig
from augury.elm.heads import ClassifierHead, RegressorHead
from augury.elm.hidden import HiddenLayer
from augury.elm.model import ELMClassifier, ELMRegressor
from augury.elm.targets import ClassTargets

FORMAT = "augury.elm"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
METADATA = "model.json"
ONNX_FILE = "model.onnx"
MODEL_TOML = "model.toml"


def save_model(
    model: ELMBase,
    out: str | Path,
    *,
    name: str | None = None,
    version: int | None = None,
    feature_names: list[str] | None = None,
    target: str | list[str] | None = None,
    metrics: dict[str, float] | None = None,
    onnx: bool = True,
) -> Path:
    """Write `model` as version `version` (default: next free) of the repository entry `out`.

    Returns the version folder. Raises ValueError if that version already exists.
    """
    hidden = model._hidden()
    if model.beta_ is None or model.intercept_ is None:
        raise ValueError("model is not fitted; call fit() before saving")
    root = Path(out)
    version = version if version is not None else _next_version(root)
    folder = root / str(version)
    if folder.exists():
        raise ValueError(f"{folder} already exists; pick another version or output folder")
    features = feature_names or model.feature_names_ or [f"x{i}" for i in range(hidden.n_features)]
    if len(features) != hidden.n_features:
        raise ValueError(f"{len(features)} feature names for {hidden.n_features} features")
    folder.mkdir(parents=True)
    tensors = {
        "mean": hidden.mean,
        "scale": hidden.scale,
        "weight": hidden.weight,
        "bias": hidden.bias,
        "beta": model.beta_,
        "intercept": model.intercept_,
    }
    save_file(
        {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()},
        str(folder / WEIGHTS),
    )
    meta = _metadata(model, features, target or model.target_, metrics)
    (folder / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    files = [WEIGHTS, METADATA]
    if onnx:
        from augury.elm.onnx_export import export_onnx

        export_onnx(model, folder / ONNX_FILE, name=name or root.name)
        files.append(ONNX_FILE)
    spec = model_spec(model, name or root.name, version, features, meta["target"], files)
    (root / MODEL_TOML).write_text(to_toml(spec))
    return folder


def _next_version(root: Path) -> int:
    versions = [int(p.name) for p in root.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _metadata(
    model: ELMBase, features: list[str], target: Any, metrics: dict[str, float] | None
) -> dict[str, Any]:
    hidden = model._hidden()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "augury_version": __version__,
        "kind": model.kind,
        "task": model.task,
        "activation": hidden.activation,
        "gamma": hidden.gamma,
        "config": model.config.to_dict(),
        "feature_names": features,
        "target": target,
        "metrics": metrics or {},
    }
    if isinstance(model, ClassifierHead):
        meta["classes"] = model.classes_.tolist()
        meta["temperature"] = model.temperature_
    if isinstance(model, RegressorHead):
        meta["single_output"] = model.single_output_
    return meta


def model_spec(
    model: ELMBase, name: str, version: int, features: list[str], target: Any, files: list[str]
) -> dict[str, Any]:
    """The model.toml content as a dict (see the module docstring)."""
    d = model._hidden().n_features
    k = 0 if model.beta_ is None else int(model.beta_.shape[1])
    spec: dict[str, Any] = {
        "name": name,
        "task": model.task,
        "runtime": "elm",
        "version": version,
        "files": files,
        "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, d], "features": features}],
    }
    if isinstance(model, ClassifierHead):
        labels = model.classes_.tolist()
        probabilities = {"name": "probabilities", "dtype": "float32", "shape": [-1, k]}
        outputs = [{**probabilities, "labels": labels}]
        kind = model.classes_.dtype.kind
        if kind in "iuUS":
            dtype = "int64" if kind in "iu" else "string"
            outputs.append({"name": "label", "dtype": dtype, "shape": [-1]})
    else:
        if isinstance(target, list):
            names = target
        else:
            names = [target or "y"] if k == 1 else [f"y{i}" for i in range(k)]
        outputs = [{"name": "prediction", "dtype": "float32", "shape": [-1, k], "targets": names}]
    spec["outputs"] = outputs
    return spec


def to_toml(spec: dict[str, Any]) -> str:
    """Minimal TOML writer for model.toml: scalars, lists of scalars, arrays of tables."""
    header = "# Augury model repository entry, written by augury.elm (see augury/elm/io.py).\n"
    lines = [header]
    tables = []
    for key, value in spec.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}\n")
    for key, rows in tables:
        for row in rows:
            lines.append(f"\n[[{key}]]\n")
            lines.extend(f"{k} = {_toml_value(v)}\n" for k, v in row.items())
    return "".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not np.isfinite(value):
            raise ValueError(f"TOML cannot hold {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} to model.toml")


def read_spec(root: str | Path) -> dict[str, Any]:
    """Parse models/NAME/model.toml."""
    with open(Path(root) / MODEL_TOML, "rb") as fh:
        return tomllib.load(fh)


def resolve_version(path: str | Path) -> Path:
    """A version folder: `path` itself, or the highest numbered version under a model folder."""
    p = Path(path)
    if (p / METADATA).is_file():
        return p
    versions = sorted(
        (int(c.name) for c in p.glob("*") if c.is_dir() and c.name.isdigit()), reverse=True
    )
    for v in versions:
        if (p / str(v) / METADATA).is_file():
            return p / str(v)
    raise FileNotFoundError(f"no saved ELM under {p}: expected {METADATA} or numbered versions")


_CLASSES: dict[str, type[ELMBase]] = {"classification": ELMClassifier, "regression": ELMRegressor}


def load_model(path: str | Path) -> ClassifierHead | RegressorHead:
    """Rebuild a saved model (kernel and online models come back as ELMClassifier/Regressor:
    the same hidden layer and weights, served the same way)."""
    folder = resolve_version(path)
    meta = json.loads((folder / METADATA).read_text())
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{folder / METADATA} is not an augury.elm v{FORMAT_VERSION} model")
    t = load_file(str(folder / WEIGHTS))
    model = _CLASSES[meta["task"]](ELMConfig.from_dict(meta["config"]))
    assert isinstance(model, ClassifierHead | RegressorHead)
    model.hidden_ = HiddenLayer(
        t["mean"], t["scale"], t["weight"], t["bias"], meta["activation"], float(meta["gamma"])
    )
    model.feature_names_ = list(meta["feature_names"])
    if isinstance(model, ClassifierHead):
        model.set_targets(ClassTargets(np.asarray(meta["classes"])))
        model.temperature_ = float(meta["temperature"])
    else:
        model.single_output_ = bool(meta["single_output"])
    model.set_output(t["beta"], t["intercept"])
    model.target_ = meta.get("target")
    return model
