"""The ASGI fast path for KServe infer requests, inside the app create_app builds: the auth,
body-size and request-context middlewares still see every request, and each answer (result
or error) is byte for byte the one the FastAPI route gives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from augury.predict.repository import ModelRepository
from augury.server.app import create_app
from augury.server.config import RequestLimits, ServerConfig
from augury.server.engine_client import LocalEngineClient
from tests.live_server import LiveServer, start_server
from tests.predict.conftest import kserve_app
from tests.predict.helpers import make_elm, make_linear

KEY = "sk-fastpath-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_linear(root)
    make_elm(root, "elm")
    return root


@pytest.fixture(scope="module")
def served(root: Path, local_engine: LocalEngineClient) -> Iterator[LiveServer]:
    """`augury serve`'s app with an API key and a 4 KiB body limit over `root`."""
    config = ServerConfig(
        api_keys={"tester": KEY},
        model_repository=str(root),
        repository_poll_interval=0,
        batch_dir=None,
        limits=RequestLimits(max_body_bytes=4096),
    )
    server = start_server(create_app(config, engines=[local_engine]))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def route_only(root: Path) -> Iterator[LiveServer]:
    """The KServe routes without the fast path: the FastAPI route answers infer."""
    server = start_server(kserve_app(ModelRepository(root, poll_interval_s=None), False))
    yield server
    server.stop()


def infer_body(rows: list[list[float]], **extra: object) -> bytes:
    tensor = {"name": "input", "shape": [len(rows), 2], "datatype": "FP32", "data": rows}
    return json.dumps({"inputs": [tensor], **extra}).encode()


CASES = [
    ("/v2/models/linear/infer", infer_body([[1.0, 2.0], [3.0, -1.0]], id="r-1")),
    ("/v2/models/linear/versions/1/infer", infer_body([[0.5, 0.5]])),
    ("/v2/models/linear/versions/x/infer", infer_body([[0.5, 0.5]])),
    ("/v2/models/linear/versions/9/infer", infer_body([[0.5, 0.5]])),
    ("/v2/models/nope/infer", infer_body([[0.5, 0.5]])),
    ("/v2/models/linear/infer", b"{not json"),
    ("/v2/models/linear/infer", infer_body([[1.0]])),
    ("/v2/models/linear/infer", b'{"inputs": [{"name": "input", "shape": [1, 2], '
     b'"datatype": "FP32", "data": [NaN, 1.0]}]}'),
    ("/v2/models/linear/infer", infer_body([[1.0, 2.0]], parameters={"timeout": -1})),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), CASES)
def test_answers_as_the_route_does(
    served: LiveServer, route_only: LiveServer, path: str, body: bytes
) -> None:
    fast = httpx.post(served.url + path, content=body, headers=AUTH)
    route = httpx.post(route_only.url + path, content=body)
    assert (fast.status_code, fast.content) == (route.status_code, route.content)
    assert fast.headers["content-type"] == "application/json"
    if fast.status_code == 200:
        assert fast.json()["outputs"][0]["shape"][0] == len(json.loads(body)["inputs"][0]["data"])
    else:
        assert set(fast.json()) == {"error"} and fast.json()["error"]


def test_a_binary_tensor_request_is_answered(served: LiveServer) -> None:
    """tritonclient's default encoding (JSON header + raw bytes) through the fast path."""
    import numpy as np
    import tritonclient.http as th

    client = th.InferenceServerClient(served.url.removeprefix("http://"))
    x = np.array([[0.0] * 4, [3.0] * 4], np.float32)
    tensor = th.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = client.infer("elm", [tensor], headers=dict(AUTH))  # it adds to the dict
    assert result.as_numpy("label").tolist() == [0, 1]


def test_the_middlewares_still_apply(served: LiveServer) -> None:
    url = served.url + "/v2/models/linear/infer"
    body = infer_body([[1.0, 2.0]])
    missing = httpx.post(url, content=body)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    wrong = httpx.post(url, content=body, headers={"Authorization": "Bearer sk-wrong-0000"})
    assert wrong.status_code == 401
    big = infer_body([[1.0, 2.0]] * 400)
    assert len(big) > 4096
    too_large = httpx.post(url, content=big, headers=AUTH)
    assert too_large.status_code == 413
    ok = httpx.post(url, content=body, headers={**AUTH, "X-Request-Id": "fast-1"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "fast-1"
    metrics = httpx.get(served.url + "/metrics", headers=AUTH).text
    assert 'api_key="tester",route="/v2/models/{name}/infer",status="200"' in metrics


def test_other_routes_pass_through(served: LiveServer) -> None:
    meta = httpx.get(served.url + "/v2/models/linear", headers=AUTH)
    assert meta.status_code == 200 and meta.json()["name"] == "linear"
    get_infer = httpx.get(served.url + "/v2/models/linear/infer", headers=AUTH)
    assert get_infer.status_code == 405  # only POST takes the fast path
