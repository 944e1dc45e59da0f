"""`augury serve` as a real process: flags, TLS-free startup, a streaming session, JSON logs and
SIGTERM draining."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from augury.cli.main import build_parser
from augury.cli.serve import config_from_args
from augury.stream.client import StreamClient
from tests.server.conftest import free_port

KEY = "sk-cli-key-0123456"
GRACE = 20.0


def test_flags_become_a_server_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.write_text("ops sk-ops-00000000\n")
    monkeypatch.setenv("AUGURY_API_KEYS", "sk-env-00000000")
    args = build_parser().parse_args(
        ["serve", "--port", "9001", "--api-key", KEY, "--api-keys-file", str(keys),
         "--kv-cache-memory", "64MiB", "--max-body-size", "1MiB", "--cors-origin", "https://a.b",
         "--request-timeout", "5", "--grace-period", "7", "--rate-limit-rpm", "60",
         "--max-tokens", "100", "--dtype", "float32", "--num-threads", "1"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.host == "127.0.0.1" and config.port == 9001
    assert set(config.api_keys.values()) == {KEY, "sk-ops-00000000", "sk-env-00000000"}
    assert config.api_keys["ops"] == "sk-ops-00000000"
    assert config.engine.kv_cache_memory == 64 << 20 and config.engine.dtype == "float32"
    assert config.limits.max_body_bytes == 1 << 20 and config.limits.max_tokens == 100
    assert config.cors_origins == ("https://a.b",) and config.rate_limits.requests_per_minute == 60
    assert (config.request_timeout, config.grace_period) == (5.0, 7.0)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    log = tmp_path / "server.log"
    command = [
        sys.executable, "-m", "augury.cli.main", "serve", "--port", str(port),
        "--api-key", KEY, "--dtype", "float32", "--kv-cache-memory", "64MiB",
        "--num-threads", "1", "--grace-period", str(GRACE),
    ]  # fmt: skip
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log)
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            r = httpx.get(url + "/ready", headers={"Authorization": f"Bearer {KEY}"}, timeout=2)
            if r.status_code == 200:
                return
            assert r.status_code == 503  # loading
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server not ready:\n" + log.read_text())


async def stream_session(url: str) -> list[int]:
    """First ids of the windows of 40 events through /v1/streams (`augury serve` runs uvicorn
    with the direct WebSocket path: augury/server/websocket.py)."""
    window = {"kind": "count", "size": 10, "stride": 1}
    async with StreamClient(url, "zscore", ["x"], window=window, api_key=KEY) as client:
        for i in range(40):
            await client.send([{"t": i * 0.01, "values": {"x": float(i % 5)}}])
        firsts: list[int] = []
        async with asyncio.timeout(20):
            while len(firsts) < 40 - 9:
                frame = await client.recv()
                if frame["type"] == "result":
                    firsts.append(frame["window"]["first_id"])
        return firsts


def test_sigterm_drains_in_flight_streams_and_exits_0(
    served: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    proc, url, log = served
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(url + "/health", timeout=5).status_code == 200  # no key needed
    assert asyncio.run(stream_session(url.replace("http", "ws") + "/v1/streams")) == list(
        range(40 - 9)
    )
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": 40,
        "ignore_eos": True,
        "stream": True,
    }
    events: list[str] = []
    started = threading.Event()

    def stream() -> None:
        with httpx.stream(
            "POST", url + "/v1/chat/completions", json=body, headers=auth, timeout=60
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line)
                    started.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert started.wait(30), log.read_text()
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.TransportError):  # the listening socket is closed
        httpx.get(url + "/health", timeout=2)
    reader.join(GRACE)
    assert events[-1] == "data: [DONE]", log.read_text()
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert proc.wait(GRACE) == 0
    assert time.monotonic() - signalled < GRACE
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "augury.access"]
    assert any(r["path"] == "/v1/chat/completions" and r["status"] == 200 for r in access)
    assert all(len(r["request_id"]) == 32 for r in access)
