"""`augury serve --ray` as a real process: it starts its own Ray, serves, and on SIGTERM
deletes the application, stops Ray and exits 0. (After test_ray_serve.py, whose Ray instance
is gone by then: module-scoped.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]


def test_serve_ray_serves_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    pytest.importorskip("ray.serve")
    port = free_port()
    log = tmp_path / "serve.log"
    command = [
        sys.executable, "-m", "augury.cli.main", "serve", "--ray", "--replicas", "1",
        "--port", str(port), "--dtype", "float32", "--num-threads", "1",
        "--kv-cache-memory", "64MiB", "--no-model-repository", "--replica-cpus", "0",
        "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        body = {"model": "SmolLM2-135M-Instruct", "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "user", "content": "Hi"}]}  # fmt: skip
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 4
        replicas = httpx.get(f"{url}/api/replicas", timeout=30).json()["data"]
        assert [e["deployment"] for e in replicas] == ["llm"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(180) == 0, log.read_text()[-3000:]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/health", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
