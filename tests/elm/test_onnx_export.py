from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from augury.elm import ELMClassifier, ELMRegressor
from augury.elm.activations import ACTIVATIONS
from augury.elm.kernel import KernelELMClassifier
from augury.elm.onnx_export import export_onnx, to_onnx
from tests.elm.conftest import Split


def _run(model: onnx.ModelProto, X: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": X.astype(np.float32)}), strict=True))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_onnx_runtime_agrees_with_native_classifier(activation: str, digits: Split) -> None:
    X, Xt, y, _ = digits
    model = ELMClassifier(n_hidden=128, activation=activation).fit(X, y)
    out = _run(to_onnx(model), Xt)
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(Xt), atol=1e-5)
    np.testing.assert_array_equal(out["label"], model.predict(Xt))


def test_graph_is_matmul_add_activation_matmul_softmax(cancer: Split) -> None:
    X, _, y, _ = cancer
    graph = to_onnx(ELMClassifier(n_hidden=16).fit(X, y)).graph
    ops = [n.op_type for n in graph.node]
    assert ops[:4] == ["MatMul", "Add", "Tanh", "MatMul"]
    assert "Softmax" in ops


def test_unfolded_standardization_and_rbf_agree(rng: np.random.Generator, tmp_path: Path) -> None:
    X = rng.normal(size=(300, 5))
    X[:, 2] = 5e3 + 0.1 * X[:, 2]  # too far from zero to fold into the weights
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    for activation in ("tanh", "rbf"):
        model = ELMClassifier(n_hidden=64, activation=activation).fit(X, y)
        path = export_onnx(model, tmp_path / f"{activation}.onnx")
        out = _run(onnx.load(str(path)), X)
        np.testing.assert_allclose(
            out["probabilities"], model.predict_proba(X.astype(np.float32)), atol=1e-5
        )


def test_regressor_and_kernel_and_string_labels(diabetes: Split, digits: Split) -> None:
    X, Xt, y, _ = diabetes
    reg = ELMRegressor(n_hidden=64, alpha=10.0).fit(X, np.column_stack([y, 2 * y]))
    out = _run(to_onnx(reg), Xt)["prediction"]
    np.testing.assert_allclose(out, reg.predict(Xt), rtol=1e-5, atol=1e-5 * np.abs(y).max())
    X, Xt, y, _ = digits
    kernel = KernelELMClassifier(n_components=300).fit(X, y)
    np.testing.assert_allclose(
        _run(to_onnx(kernel), Xt)["probabilities"], kernel.predict_proba(Xt), atol=1e-5
    )
    names = np.array([f"digit-{d}" for d in range(10)])
    model = ELMClassifier(n_hidden=64).fit(X, names[y])
    np.testing.assert_array_equal(_run(to_onnx(model), Xt)["label"], model.predict(Xt))
