"""Open Inference Protocol conformance with tritonclient[http] against a live uvicorn server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from tests.predict.conftest import Live
from tests.predict.helpers import LINEAR_TOML, LINEAR_W, linear_onnx, make_linear

Server = tuple[Live, Path]


def infer_input(name: str, array: np.ndarray, datatype: str, binary: bool) -> th.InferInput:
    tensor = th.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_server_metadata_and_health(live_repository: Server) -> None:
    client = th.InferenceServerClient(live_repository[0].url)
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "augury"
    assert "model_repository" in meta["extensions"]


def test_model_metadata_and_readiness(live_repository: Server) -> None:
    client = th.InferenceServerClient(live_repository[0].url)
    meta = client.get_model_metadata("linear")
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 2]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "label"]
    assert client.get_model_metadata("linear", "1")["name"] == "linear"
    assert client.is_model_ready("linear")
    assert client.is_model_ready("linear", "1")
    assert not client.is_model_ready("linear", "2")
    assert not client.is_model_ready("nope")
    config = client.get_model_config("linear")
    assert config["max_batch_size"] == 64
    with pytest.raises(InferenceServerException, match="not in the repository"):
        client.get_model_metadata("nope")


@pytest.mark.parametrize("binary", [False, True])
def test_infer(live_repository: Server, binary: bool) -> None:
    client = th.InferenceServerClient(live_repository[0].url)
    x = np.array([[2.0, 0.0], [0.0, 3.0], [-2.0, -2.0]], np.float32)
    outputs = [th.InferRequestedOutput("probabilities"), th.InferRequestedOutput("label")]
    result = client.infer("linear", [infer_input("input", x, "FP32", binary)], outputs=outputs)
    probs = result.as_numpy("probabilities")
    scores = x @ LINEAR_W
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")] == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.parametrize("binary_out", [False, True])
def test_tritonclient_gets_outputs_in_the_encoding_it_asks_for(
    live_repository: Server, binary_out: bool
) -> None:
    client = th.InferenceServerClient(live_repository[0].url)
    x = np.array([[2.0, 0.0], [-2.0, -2.0]], np.float32)
    outputs = [
        th.InferRequestedOutput(n, binary_data=binary_out) for n in ("probabilities", "label")
    ]
    result = client.infer("linear", [infer_input("input", x, "FP32", True)], outputs=outputs)
    for name in ("probabilities", "label"):
        meta = result.get_output(name)
        assert ("data" in meta) is not binary_out
        assert ("binary_data_size" in meta.get("parameters", {})) is binary_out
    scores = x @ LINEAR_W
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5)
    labels = result.as_numpy("label").tolist()
    assert labels == ([b"a", b"c"] if binary_out else ["a", "c"])  # binary BYTES come as bytes


def test_binary_outputs_on_the_wire(live_repository: Server) -> None:
    """binary_data_output answers every output as raw bytes after the JSON header (its length in
    Inference-Header-Content-Length); an output's own binary_data overrides it."""
    import httpx

    tensor = {"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [2, 0, 0, 3]}
    body = {"inputs": [tensor], "parameters": {"binary_data_output": True},
            "outputs": [{"name": "probabilities"},
                        {"name": "label", "parameters": {"binary_data": False}}]}  # fmt: skip
    url = f"http://{live_repository[0].url}/v2/models/linear/infer"
    response = httpx.post(url, content=json.dumps(body))
    assert response.status_code == 200
    size = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:size])
    probs, label = head["outputs"]
    assert label["data"] == ["a", "b"] and "parameters" not in label
    assert probs["shape"] == [2, 3] and probs["datatype"] == "FP32"
    assert probs["parameters"]["binary_data_size"] == 2 * 3 * 4 == len(response.content) - size
    values = np.frombuffer(response.content[size:], "<f4").reshape(2, 3)
    scores = np.array([[2.0, 0.0], [0.0, 3.0]], np.float32) @ LINEAR_W
    np.testing.assert_allclose(
        values, np.exp(scores) / np.exp(scores).sum(1, keepdims=True), rtol=1e-5
    )
    body = {"inputs": [tensor], "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}
    response = httpx.post(url, content=json.dumps(body))
    size = int(response.headers["inference-header-content-length"])
    raw = response.content[size:]
    assert raw == b"\x01\x00\x00\x00a\x01\x00\x00\x00b"  # BYTES: 4-byte length, then the bytes
    body["parameters"] = {"binary_data_output": "yes"}
    response = httpx.post(url, content=json.dumps(body))
    assert response.status_code == 400
    assert response.json() == {
        "error": "parameters.binary_data_output must be true or false, got 'yes'"
    }


def test_infer_elm_written_model(live_repository: Server) -> None:
    """A folder written by augury.elm.save_model serves as it is."""
    client = th.InferenceServerClient(live_repository[0].url)
    x = np.array([[0.0] * 4, [3.0] * 4], np.float32)
    result = client.infer("elm", [infer_input("input", x, "FP32", True)])
    assert result.as_numpy("label").tolist() == [0, 1]
    assert result.as_numpy("probabilities").shape == (2, 2)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([("input", np.zeros((1, 2), np.float64), "FP64")], "must have datatype FP32, got FP64"),
        ([("input", np.zeros((1, 3), np.float32), "FP32")], "must have shape [-1, 2], got [1, 3]"),
        ([("input", np.array([[np.nan, 1.0]], np.float32), "FP32")], "NaN or infinity"),
        ([("other", np.zeros((1, 2), np.float32), "FP32")], "unknown input 'other'"),
    ],
)
def test_bad_tensors_answer_400(
    live_repository: Server, inputs: list[tuple[str, np.ndarray, str]], message: str
) -> None:
    client = th.InferenceServerClient(live_repository[0].url)
    tensors = [infer_input(n, a, d, False) for n, a, d in inputs]
    with pytest.raises(InferenceServerException) as info:
        client.infer("linear", tensors)
    assert info.value.status() == "400"
    assert message in info.value.message()


def post(url: str, path: str, body: Any) -> tuple[int, Any]:
    import httpx

    response = httpx.post(f"http://{url}{path}", content=json.dumps(body))
    return response.status_code, response.json()


def test_wrong_length_and_bad_json_answer_400_with_error_body(live_repository: Server) -> None:
    url = live_repository[0].url
    tensor = {"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}
    status, body = post(url, "/v2/models/linear/infer", {"inputs": [tensor]})
    assert status == 400
    assert body == {"error": "input 'input' has 3 values but shape [2, 2] needs 4"}
    status, body = post(url, "/v2/models/linear/infer", {"inputs": "nope"})
    assert status == 400 and "inputs" in body["error"]
    status, body = post(url, "/v2/models/missing/infer", {"inputs": []})
    assert status == 404 and "missing" in body["error"]


TABULAR = """
[preprocess]
kind = "tabular"
[[preprocess.features]]
name = "amount"
min = 0.0
max = 100.0
[[preprocess.features]]
name = "age"
required = false
default = 1.5
"""


def test_tabular_metadata_names_the_features_a_client_may_send(live_repository: Server) -> None:
    live, root = live_repository
    toml = LINEAR_TOML.replace('name = "linear"', 'name = "tabular"') + TABULAR
    linear_onnx(root / "tabular" / "1" / "model.onnx", LINEAR_W)
    (root / "tabular" / "model.toml").write_text(toml)
    client = th.InferenceServerClient(live.url)
    client.load_model("tabular")
    meta = client.get_model_metadata("tabular")
    assert meta["parameters"]["features"] == ["amount", "age"]  # what the web page labels
    assert meta["parameters"]["feature_details"] == [
        {"name": "amount", "required": True, "min": 0.0, "max": 100.0},
        {"name": "age", "required": False, "default": 1.5},
    ]
    assert "features" not in client.get_model_metadata("linear")["parameters"]
    # The names are what a client sends: one tensor per feature, the optional one left out.
    amount = infer_input("amount", np.array([3.0], np.float32), "FP32", False)
    result = client.infer("tabular", [amount])
    scores = np.array([[3.0, 1.5]], np.float32) @ LINEAR_W
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5)


def test_repository_load_unload_and_index(live_repository: Server) -> None:
    live, root = live_repository
    client = th.InferenceServerClient(live.url)
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["linear"]["state"] == "READY" and index["linear"]["version"] == "1"
    client.unload_model("linear")
    assert not client.is_model_ready("linear")
    status, body = post(live.url, "/v2/models/linear/infer", {"inputs": []})
    assert status == 503 and "not ready" in body["error"]
    make_linear(root, version=2)
    client.load_model("linear")
    assert client.is_model_ready("linear", "2")
    (root / "linear" / "3").mkdir()  # a broken new version: the load fails, v2 keeps serving
    with pytest.raises(InferenceServerException, match="failed to load"):
        client.load_model("linear")
    assert client.is_model_ready("linear", "2")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["linear"]["state"] == "READY"
