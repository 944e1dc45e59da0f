"""Export a fitted ELM to ONNX (opset 17), the same float32 graph the native predictor runs:

    input (N, d) -> [Cast f64, Sub mean, Mul 1/scale, Cast f32]
      -> MatMul W -> Add b -> [rbf: Sub gamma ||x||^2, Min 0]
      -> activation -> MatMul beta -> Add c
      -> classification: Mul 1/temperature -> Softmax -> "probabilities" (N, k)
                         ArgMax -> Gather(classes) -> "label" (N,)   (int or string classes)
      -> regression:     "prediction" (N, k)

The bracketed steps appear only when the native predictor needs them (see `predictor.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from augury.elm.activations import LEAKY_SLOPE
from augury.elm.base import ELMBase
from augury.elm.heads import ClassifierHead
from augury.elm.predictor import FrozenWeights, freeze

OPSET = 17
INPUT = "input"
PROBABILITIES = "probabilities"
LABEL = "label"
PREDICTION = "prediction"

Nodes = list[onnx.NodeProto]


class _Graph:
    """Accumulates nodes and constant initializers with generated names."""

    def __init__(self) -> None:
        self.nodes: Nodes = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: Any) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output


def _gelu(g: _Graph, z: str) -> str:
    # z * 0.5 * (1 + erf(z / sqrt(2))), exact GELU as in activations.py
    scaled = g.op("Mul", [z, g.const("inv_sqrt2", np.float32(0.7071067811865476))], "gelu_s")
    erf = g.op("Erf", [scaled], "gelu_erf")
    phi = g.op("Add", [erf, g.const("one", np.float32(1.0))], "gelu_1p")
    half = g.op("Mul", [phi, g.const("half", np.float32(0.5))], "gelu_phi")
    return g.op("Mul", [z, half], "hidden")


_ACTIVATIONS: dict[str, Callable[[_Graph, str], str]] = {
    "sigmoid": lambda g, z: g.op("Sigmoid", [z], "hidden"),
    "tanh": lambda g, z: g.op("Tanh", [z], "hidden"),
    "relu": lambda g, z: g.op("Relu", [z], "hidden"),
    "leaky_relu": lambda g, z: g.op("LeakyRelu", [z], "hidden", alpha=LEAKY_SLOPE),
    "gelu": _gelu,
    "sine": lambda g, z: g.op("Sin", [z], "hidden"),
    "rbf": lambda g, z: g.op("Exp", [z], "hidden"),
}


def _hidden(g: _Graph, f: FrozenWeights) -> str:
    x = INPUT
    if f.shift is not None and f.inv_scale is not None:
        # in float64, like the native path: float32 would cancel digits of large-mean features
        x = g.op("Cast", [x], "input64", to=TensorProto.DOUBLE)
        x = g.op("Sub", [x, g.const("mean", f.shift)], "centred")
        x = g.op("Mul", [x, g.const("inv_scale", f.inv_scale)], "standardized64")
        x = g.op("Cast", [x], "standardized", to=TensorProto.FLOAT)
    z = g.op("MatMul", [x, g.const("W", f.weight)], "xw")  # (N, L)
    z = g.op("Add", [z, g.const("b", f.bias)], "preact")
    if f.gamma:  # rbf: z - gamma ||x||^2, clipped at 0 like the native path
        sq = g.op("ReduceSumSquare", [x], "sqnorm", axes=[1], keepdims=1)  # (N, 1)
        sq = g.op("Mul", [sq, g.const("gamma", np.float32(f.gamma))], "gamma_sqnorm")
        z = g.op("Sub", [z, sq], "neg_sqdist")
        z = g.op("Min", [z, g.const("zero", np.float32(0.0))], "neg_sqdist_clipped")
    return _ACTIVATIONS[f.activation](g, z)


def _label_tensor(classes: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], int] | None:
    if np.issubdtype(classes.dtype, np.integer):
        return classes.astype(np.int64), TensorProto.INT64
    if classes.dtype.kind in "US":
        return classes.astype(object), TensorProto.STRING
    return None


def to_onnx(model: ELMBase, name: str = "elm") -> onnx.ModelProto:
    """The fitted model as an ONNX graph with float32 input "input" (N, d)."""
    hidden = model._hidden()
    if model.beta_ is None or model.intercept_ is None:
        raise ValueError("model has no output weights; fit it before exporting")
    f = freeze(hidden, model.beta_, model.intercept_, np.float32)
    g = _Graph()
    h = _hidden(g, f)
    scores = g.op("MatMul", [h, g.const("beta", f.beta)], "hbeta")  # (N, k)
    scores = g.op("Add", [scores, g.const("c", f.intercept)], "scores")
    k = f.beta.shape[1]
    outputs = []
    if isinstance(model, ClassifierHead):
        inv_tau = g.const("inv_temperature", np.float32(1.0 / model.temperature_))
        logits = g.op("Mul", [scores, inv_tau], "logits")
        g.op("Softmax", [logits], PROBABILITIES, axis=1)
        outputs.append(helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", k]))
        labels = _label_tensor(model.classes_)
        if labels is not None:
            idx = g.op("ArgMax", [scores], "argmax", axis=1, keepdims=0)  # (N,)
            g.op("Gather", [g.const("classes", labels[0]), idx], LABEL, axis=0)
            outputs.append(helper.make_tensor_value_info(LABEL, labels[1], ["N"]))
    else:
        g.op("Identity", [scores], PREDICTION)
        outputs.append(helper.make_tensor_value_info(PREDICTION, TensorProto.FLOAT, ["N", k]))
    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", f.weight.shape[0]])],
        outputs,
        g.initializers,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="augury.elm"
    )
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model: ELMBase, path: str | Path, name: str = "elm") -> Path:
    """Write the model to `path` (.onnx) and return the path."""
    target = Path(path)
    onnx.save_model(to_onnx(model, name), str(target))
    return target
