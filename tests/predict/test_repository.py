"""The repository: loading, polling for new versions, failed loads, unloading, unsafe files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from augury.predict.errors import ConfigError, ModelNotFound, ModelNotReady
from augury.predict.pipeline import InferRequest
from augury.predict.repository import ModelRepository
from tests.predict.helpers import make_elm, make_linear

pytestmark = pytest.mark.anyio

X = InferRequest({"input": np.array([[1.0, 0.0]], np.float32)})


async def test_loads_all_and_polls_new_versions(tmp_path: Path) -> None:
    make_linear(tmp_path)
    make_elm(tmp_path, "elm")
    repo = ModelRepository(tmp_path, poll_interval_s=None)
    await repo.start()
    assert [e.state for e in repo.index()] == ["READY", "READY"]
    result = await repo.get("linear").infer(X)
    assert result.outputs["label"].tolist() == ["a"]
    make_linear(tmp_path, version=2)
    await repo.poll()
    assert repo.get("linear").version == 2
    with pytest.raises(ModelNotFound, match="version 1 is not served"):
        repo.get("linear", 1)
    await repo.stop()


async def test_failed_load_keeps_the_previous_version(tmp_path: Path) -> None:
    make_linear(tmp_path)
    repo = ModelRepository(tmp_path, poll_interval_s=None)
    await repo.start()
    broken = tmp_path / "linear" / "2"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ConfigError, match="not a loadable ONNX model"):
        await repo.load("linear")
    assert repo.get("linear").version == 1
    assert (await repo.get("linear").infer(X)).outputs["label"].tolist() == ["a"]
    await repo.poll()  # the failed version is not retried on every poll
    assert repo.get("linear").version == 1
    await repo.stop()


async def test_unload_and_new_models(tmp_path: Path) -> None:
    make_linear(tmp_path)
    repo = ModelRepository(tmp_path, poll_interval_s=None)
    await repo.start()
    await repo.unload("linear")
    with pytest.raises(ModelNotReady, match="not ready"):
        repo.get("linear")
    await repo.poll()  # unloaded by hand: polling leaves it unloaded
    assert repo.index()[0].state == "UNAVAILABLE"
    make_elm(tmp_path, "later")
    await repo.poll()
    assert repo.get("later").version == 1
    with pytest.raises(ModelNotFound):
        repo.get("nope")
    await repo.stop()


async def test_pickle_files_are_refused(tmp_path: Path) -> None:
    folder = make_linear(tmp_path)
    (folder / "model.pkl").write_bytes(b"\x80\x04")
    repo = ModelRepository(tmp_path, poll_interval_s=None)
    await repo.start()
    entry = repo.index()[0]
    assert entry.state == "UNAVAILABLE"
    assert "model.pkl" in entry.reason and "arbitrary code" in entry.reason
    await repo.stop()


async def test_bad_config_is_reported_by_field(tmp_path: Path) -> None:
    make_linear(tmp_path)
    toml = tmp_path / "linear" / "model.toml"
    toml.write_text(toml.read_text().replace("max_queue_delay_ms = 20", "max_queue_delay_ms = -1"))
    repo = ModelRepository(tmp_path, poll_interval_s=None)
    await repo.start()
    assert "batching.max_queue_delay_ms" in repo.index()[0].reason
    await repo.stop()


_BLAS_THREADS = """
import asyncio, sys
from threadpoolctl import threadpool_info, threadpool_limits
from augury.predict.repository import ModelRepository

def blas_threads():
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

async def main(root):
    threadpool_limits(2, user_api="blas")
    seen = [blas_threads()]
    for kwargs in ({"blas_threads": None}, {}):
        repo = ModelRepository(root, poll_interval_s=None, **kwargs)
        await repo.start()
        await repo.stop()
        seen.append(blas_threads())
    print(seen)

asyncio.run(main(sys.argv[1]))
"""


def test_start_sets_numpy_blas_threads(tmp_path: Path) -> None:
    """The serving process runs numpy's BLAS on one thread by default (idle OpenBLAS threads
    spin on the cores the event loop needs); blas_threads=None leaves them as they are. In a
    fresh process: this one's BLAS threads depend on what earlier tests did."""
    import subprocess
    import sys

    make_linear(tmp_path)
    cmd = [sys.executable, "-c", _BLAS_THREADS, str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[{2}, {2}, {1}]"
