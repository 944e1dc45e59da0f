"""ONNX Runtime: CPU execution provider, CUDA first when onnxruntime-gpu and a GPU are present.

runtime_options: file (default "model.onnx"), threads (intra-op threads, default 1: on a few
cores one thread per call and batching beat threads that fight over cores).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from augury.predict.config import ModelConfig
from augury.predict.errors import ConfigError


class OnnxRuntime:
    """One InferenceSession; inputs are matched by name, or by position when names differ."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider",) if p in available]
        providers.append("CPUExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:
            raise ConfigError(f"{path} is not a loadable ONNX model: {exc}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_types = {i.name: i.type for i in self.session.get_inputs()}

    def run(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        if all(name in inputs for name in self.input_names):
            feeds = {name: inputs[name] for name in self.input_names}
        elif len(inputs) == len(self.input_names):
            feeds = dict(zip(self.input_names, inputs.values(), strict=True))
        else:
            raise ValueError(f"the ONNX model needs inputs {self.input_names}, got {list(inputs)}")
        feeds = {name: _cast(value, self._input_types[name]) for name, value in feeds.items()}
        results = self.session.run(self.output_names, feeds)
        return {name: np.asarray(r) for name, r in zip(self.output_names, results, strict=True)}


_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def _cast(value: NDArray[Any], onnx_type: str) -> NDArray[Any]:
    dtype = _ONNX_TYPES.get(onnx_type)
    return value if dtype is None else np.ascontiguousarray(value, dtype=dtype)


def load(config: ModelConfig, folder: Path) -> OnnxRuntime:
    name = str(config.runtime_options.get("file", "model.onnx"))
    path = folder / name
    if not path.is_file():
        raise ConfigError(f"{path} is missing: runtime 'onnx' needs runtime_options.file")
    return OnnxRuntime(path, threads=int(config.runtime_options.get("threads", 1)))
