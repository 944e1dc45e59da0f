"""Load test of the HTTP server: concurrent streaming chat clients against `augury serve`.

    .venv/bin/python -m bench.bench_server [--concurrency 1 8 32] [--max-tokens 64]

Starts `augury serve` itself on a free loopback port (bundled model, --dtype, --num-threads 1 by
default), waits until it is ready, then for each concurrency level runs that many asyncio + httpx
clients, each sending streaming chat requests back to back (EOS ignored, so every request
generates exactly --max-tokens tokens). Reports requests/s, output tokens/s, time to first token
and inter-token latency (p50/p99, client side, from SSE arrival times). Prints a table and writes
bench/results/bench_server.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import free_port, median, pct, print_table, write_json

QUESTIONS = [
    "Tell me about rivers.",
    "Describe a volcano.",
    "How is glass made?",
    "What is jazz?",
    "Why do bees dance?",
    "Explain the tides.",
    "What is a comet?",
    "How do birds migrate?",
]


@dataclass
class RequestTiming:
    ttft: float
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "augury.cli.main", "serve", "--port", str(port),
        "--dtype", args.dtype, "--num-threads", str(args.threads),
        "--kv-cache-memory", args.kv_cache_memory, "--log-level", "warning",
        "--device", args.device,
    ]  # fmt: skip
    if args.model:
        command += ["--model", args.model]
    if args.no_model_repository:
        command.append("--no-model-repository")
    with log.open("wb") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> str:
    """The served model id, once /ready answers 200."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited:\n" + log.read_text())
        try:
            r = httpx.get(url + "/ready", timeout=2)
            if r.status_code == 200:
                model: str = r.json()["models"][0]
                return model
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready after 120 s:\n" + log.read_text())


async def one_request(client: httpx.AsyncClient, body: dict[str, Any]) -> RequestTiming:
    start = time.perf_counter()
    timing: RequestTiming | None = None
    last = start
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk.get("usage"):
                assert timing is not None
                timing.tokens = chunk["usage"]["completion_tokens"]
            if not chunk["choices"] or not chunk["choices"][0]["delta"].get("content"):
                continue
            now = time.perf_counter()
            if timing is None:
                timing = RequestTiming(ttft=now - start)
            else:
                timing.gaps.append(now - last)
            last = now
    assert timing is not None, "no content streamed"
    if not timing.tokens:  # a server that sends no usage chunk: one token per content chunk
        timing.tokens = len(timing.gaps) + 1
    return timing


async def run_level(
    url: str, model: str, concurrency: int, requests: int, max_tokens: int
) -> dict[str, Any]:
    """`concurrency` clients share `requests` requests; returns the level's figures."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    timings: list[RequestTiming] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = {
                "model": model,
                "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                "max_tokens": max_tokens,
                "temperature": 0.7,
                "seed": i,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            timings.append(await one_request(client, body))

    # A connection per request: llama-server may close a keep-alive connection after a
    # streamed response, and a request sent on it then fails before any byte arrives.
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ttfts = [t.ttft * 1e3 for t in timings]
    gaps = [g * 1e3 for t in timings for g in t.gaps]
    return {
        "concurrency": concurrency,
        "requests": len(timings),
        "wall_s": wall,
        "requests_per_s": len(timings) / wall,
        "output_tokens_per_s": sum(t.tokens for t in timings) / wall,
        "ttft_ms_p50": median(ttfts),
        "ttft_ms_p99": pct(ttfts, 99),
        "itl_ms_p50": median(gaps),
        "itl_ms_p99": pct(gaps, 99),
        # Tokens after the first over the time from the first to the last, per request: right
        # whatever the server puts in a chunk (1 / ITL p50 is not when tokens come in bursts,
        # as accepted speculative drafts do).
        "decode_tokens_per_s": median(
            [(t.tokens - 1) / sum(t.gaps) for t in timings if t.gaps and sum(t.gaps) > 0]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--waves", type=int, default=2, help="requests per client at each level")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=1, help="server torch threads")
    parser.add_argument("--kv-cache-memory", default="512MiB")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model", default=None, help="a GGUF file (default: the bundled one)")
    parser.add_argument("--no-model-repository", action="store_true", help="LLM only")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(f"/tmp/bench_server_{port}.log")
    proc = start_server(args, port, log)
    try:
        model = wait_ready(proc, url, log)
        asyncio.run(run_level(url, model, 1, 1, 8))  # warm-up
        levels = []
        for c in args.concurrency:
            levels.append(asyncio.run(run_level(url, model, c, c * args.waves, args.max_tokens)))
    finally:
        proc.terminate()
        proc.wait(30)
    header = ["clients", "requests", "req/s", "out tok/s", "TTFT p50 ms", "TTFT p99 ms",
              "ITL p50 ms", "ITL p99 ms"]  # fmt: skip
    rows = [
        [lv["concurrency"], lv["requests"], lv["requests_per_s"], lv["output_tokens_per_s"],
         lv["ttft_ms_p50"], lv["ttft_ms_p99"], lv["itl_ms_p50"], lv["itl_ms_p99"]]
        for lv in levels
    ]  # fmt: skip
    title = (
        f"augury serve, {model}, {args.dtype}, {args.device}, {args.threads} thread(s), "
        f"{args.max_tokens} output tokens per request, streaming"
    )
    print_table(title, header, rows)
    write_json("bench_server", {"config": vars(args), "model": model, "levels": levels})


if __name__ == "__main__":
    main()
