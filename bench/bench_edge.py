"""Edge footprint: cold start to first token and peak RSS of `augury serve`, per model format.

    .venv/bin/python -m bench.bench_edge [--kv-cache-memory 32MiB] [--threads 2]

For the bundled Q4_1 GGUF and for `augury export --quantize int4` / `int8` folders of it (written
to a temporary folder first): start `augury serve --model M --no-model-repository` and time the
process start -> the first streamed token of a chat request sent as soon as the port accepts
connections (cold start; the request waits for the model to load); then 8 concurrent streaming
chats of 64 tokens; then the server's peak RSS (VmHWM from /proc) and its RSS at rest. Prints a
table; writes bench/results/bench_edge.json.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_server import run_level
from bench.common import free_port, print_table, sse_has_text, write_json


def memory_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak) and VmRSS (now) of a process, in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def first_token_s(url: str, started: float, deadline: float) -> float:
    """Seconds from `started` to the first streamed token of a chat request sent as soon as
    the server accepts connections."""
    body = {
        "model": "any",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
    }
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(url + "/ready", timeout=2)
        except httpx.TransportError:
            time.sleep(0.02)
            continue
        if ready.status_code != 200:  # listening, model still loading
            time.sleep(0.02)
            continue
        body["model"] = ready.json()["models"][0]
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if sse_has_text(line):
                    return time.perf_counter() - started
    raise RuntimeError("no first token before the deadline")


def measure(name: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "augury.cli.main", "serve", "--port", str(port),
        "--model", model, "--no-model-repository", "--kv-cache-memory", args.kv_cache_memory,
        "--num-threads", str(args.threads), "--log-level", "warning",
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        cold = first_token_s(url, started, time.monotonic() + 300)
        model_id = httpx.get(url + "/ready", timeout=5).json()["models"][0]
        level = asyncio.run(run_level(url, model_id, 8, 8, 64))
        time.sleep(0.5)
        mem = memory_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "format": name,
        "cold_start_first_token_s": cold,
        "peak_rss_mb": mem["VmHWM"],
        "rss_after_mb": mem["VmRSS"],
        "output_tokens_per_s_8_clients": level["output_tokens_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kv-cache-memory", default="32MiB")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from augury.models.default import default_model_path

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [("GGUF Q4_1 (bundled)", str(default_model_path()))]
        for mode in ("int4", "int8"):
            out = Path(tmp) / mode
            subprocess.run(
                [sys.executable, "-m", "augury.cli.main", "export", str(out), "--quantize", mode],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            models.append((f"augury export --quantize {mode}", str(out)))
        for name, path in models:
            results.append(measure(name, path, args))
    header = ["model", "cold start -> first token s", "peak RSS MiB", "RSS after MiB",
              "8 clients tok/s"]  # fmt: skip
    rows = [
        [r["format"], r["cold_start_first_token_s"], r["peak_rss_mb"], r["rss_after_mb"],
         r["output_tokens_per_s_8_clients"]]
        for r in results
    ]  # fmt: skip
    title = (
        f"augury serve footprint (KV cache {args.kv_cache_memory}, {args.threads} threads, "
        "no model repository)"
    )
    print_table(title, header, rows)
    write_json("bench_edge", {"config": vars(args), "results": results})


if __name__ == "__main__":
    main()
