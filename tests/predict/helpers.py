"""Small factories: model folders in a temporary repository, apps serving them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from augury.elm import ELMClassifier, save_model


def blobs(n: int = 400, d: int = 4, seed: int = 0) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Two well-separated Gaussian classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + 3.0 * y[:, None]
    return X.astype(np.float32), y.astype(np.int64)


def make_elm(root: Path, name: str = "elm", extra_toml: str = "", seed: int = 0) -> Path:
    """An ELM classifier saved by augury.elm (its own model.toml), plus `extra_toml`."""
    X, y = blobs(seed=seed)
    model = ELMClassifier(n_hidden=32, seed=seed).fit(X, y)
    folder = save_model(model, root / name, onnx=False)
    if extra_toml:
        toml = root / name / "model.toml"
        toml.write_text(toml.read_text() + "\n" + extra_toml)
    return folder


def linear_onnx(path: Path, weight: NDArray[np.float32], input_name: str = "input") -> None:
    """An ONNX graph scores = input @ weight, with a variable batch dimension."""
    d, k = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "W"], ["scores"])],
        "linear",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["n", d])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", k])],
        [numpy_helper.from_array(weight.astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


LINEAR_TOML = """
name = "linear"
task = "classification"
runtime = "onnx"
labels = ["a", "b", "c"]

[[inputs]]
name = "input"
dtype = "FP32"
shape = [-1, 2]

[[outputs]]
name = "probabilities"
dtype = "FP32"
shape = [-1, 3]

[[outputs]]
name = "label"
dtype = "BYTES"
shape = [-1]

[postprocess]
softmax = true

[batching]
max_batch_size = 64
max_queue_delay_ms = 20
"""

LINEAR_W = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]], np.float32)


def make_linear(root: Path, version: int = 1, toml: str = LINEAR_TOML) -> Path:
    """ONNX model "linear": 2 features -> softmax over 3 labels (argmax of x0, x1, -x0-x1)."""
    (root / "linear").mkdir(parents=True, exist_ok=True)
    (root / "linear" / "model.toml").write_text(toml)
    folder = root / "linear" / str(version)
    linear_onnx(folder / "model.onnx", LINEAR_W)
    return folder


def png(pixels: NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
