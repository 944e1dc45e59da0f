"""/v1/embeddings (OpenAI shape, float and base64) and text models over the live protocol."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from augury.predict.repository import ModelRepository
from tests.predict.conftest import Live, kserve_app


@pytest.fixture(scope="module")
def embedding_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from augury.predict.examples import text

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models")
    text.build_encoder(root)
    with Live(kserve_app(ModelRepository(root, poll_interval_s=None))) as live:
        yield live


def test_embeddings_float_and_base64(embedding_server: Live) -> None:
    url = f"http://{embedding_server.url}/v1/embeddings"
    texts = ["A man is eating food.", "Someone is having a meal.", "The stock market fell."]
    body = httpx.post(url, json={"model": "minilm", "input": texts}).json()
    assert body["object"] == "list" and body["model"] == "minilm"
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert body["usage"]["prompt_tokens"] > 10
    b64 = httpx.post(url, json={"model": "minilm", "input": texts[0], "encoding_format": "base64"})
    decoded = np.frombuffer(base64.b64decode(b64.json()["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(decoded, vectors[0], atol=1e-6)


def test_embeddings_errors_use_the_openai_envelope(embedding_server: Live) -> None:
    url = f"http://{embedding_server.url}/v1/embeddings"
    missing = httpx.post(url, json={"model": "nope", "input": "hi"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"
    empty = httpx.post(url, json={"model": "minilm", "input": []})
    assert empty.status_code == 400 and "input" in empty.json()["error"]["message"]


def test_text_over_kserve(embedding_server: Live) -> None:
    import tritonclient.http as th

    client = th.InferenceServerClient(embedding_server.url)
    tensor = th.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([b"hello world", b"good morning"], dtype=object))
    result = client.infer("minilm", [tensor])
    assert result.as_numpy("embedding").shape == (2, 384)


def test_the_torch_runtime_leaves_the_process_threads(tmp_path: Path) -> None:
    """A text model runs torch on one thread in the threads that load and run it and leaves
    other threads' count alone (an OpenMP team of its own beside the language model's made
    single-stream generation 2.5x slower)."""
    from augury.predict.config import load_config
    from augury.predict.errors import ConfigError
    from augury.predict.examples import text
    from augury.predict.pipeline import InferRequest, Pipeline

    text.build_encoder(tmp_path)
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []

        def load_and_run() -> None:
            pipeline = Pipeline.load(load_config(folder), folder / "1")
            pipeline.predict(InferRequest({"text": np.array(["a sentence"], dtype=object)}))
            seen.append(torch.get_num_threads())

        worker = threading.Thread(target=load_and_run)
        worker.start()
        worker.join()
        assert seen == [1] and torch.get_num_threads() == 2
        toml = (folder / "model.toml").read_text()
        (folder / "model.toml").write_text(toml + "\n[runtime_options]\nthreads = 1\n")
        with pytest.raises(ConfigError, match="takes no threads option"):
            Pipeline.load(load_config(folder), folder / "1")
    finally:
        torch.set_num_threads(before)
