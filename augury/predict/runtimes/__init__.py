"""Runtimes run one merged batch: `run({name: array}) -> {name: array}`.

`load_runtime` picks the runtime by the config's `runtime` field from a table of loaders
(imported lazily: serving an ELM never imports torch or onnxruntime). Only safe formats load:
ONNX, safetensors, npz and JSON. A version folder holding pickle-based files is refused,
because unpickling runs arbitrary code from the file.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from numpy.typing import NDArray

from augury.predict.config import ModelConfig
from augury.predict.errors import ConfigError

UNSAFE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".sav", ".dill")
"""File types that are loaded with pickle (torch .pt/.pth files are zip archives of pickles)."""

# runtime name -> "module:function" returning a Runtime for (config, version folder).
_LOADERS = {
    "onnx": "augury.predict.runtimes.onnx:load",
    "elm": "augury.predict.runtimes.elm:load",
    "torch": "augury.predict.runtimes.torch:load",
}


class Runtime(Protocol):
    """Runs one batch. Every array's first dimension is the batch."""

    def run(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]: ...


def check_safe_files(folder: Path) -> None:
    """ConfigError if `folder` holds a pickle-based file."""
    unsafe = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in UNSAFE_SUFFIXES)
    if unsafe:
        raise ConfigError(
            f"{folder} contains {', '.join(unsafe)}: pickle/joblib files can run arbitrary code "
            "when loaded, so Augury refuses them. Export the model to ONNX "
            "(e.g. skl2onnx, torch.onnx.export) or save weights as safetensors/npz with JSON "
            "metadata, and remove the pickle file."
        )


def load_runtime(config: ModelConfig, folder: Path) -> Runtime:
    """The runtime of `config` loaded from the version folder `folder`."""
    check_safe_files(folder)
    module, _, function = _LOADERS[config.runtime].partition(":")
    loader = getattr(importlib.import_module(module), function)
    runtime: Runtime = loader(config, folder)
    return runtime
