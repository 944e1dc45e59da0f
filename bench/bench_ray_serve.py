"""Single-process `augury serve` against `augury serve --ray` with 1 and 2 replicas.

    .venv/bin/python -m bench.bench_ray_serve [--systems single ray-1 ray-2]
        [--concurrency 8] [--requests 48] [--max-tokens 32] [--infer-requests 2000]

Each system is started as its own process on a free loopback port (the Ray ones start a local
Ray instance), with the same thread budget: `--threads` torch threads in all, split evenly
between LLM replicas. Two workloads per system:
  llm      `--concurrency` clients send non-streaming greedy chat requests back to back
           (EOS ignored: every request generates exactly --max-tokens tokens);
  predict  16 clients send KServe v2 requests (2 rows each) to a small ELM classifier.
Reports requests/s, generated tokens/s and client-side latency p50/p99, prints a table and
writes bench/results/bench_ray_serve.json. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import free_port, pct, print_table, write_json

QUESTIONS = ["Tell me about rivers.", "Describe a volcano.", "How is glass made?",
             "What is jazz?", "Why do bees dance?", "Explain the tides."]  # fmt: skip


@dataclass
class Result:
    system: str
    workload: str
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    tokens_per_s: float
    p50_s: float
    p99_s: float


def make_repository(root: Path) -> None:
    """An ELM classifier on 8 features (what a fast predictive model costs to serve)."""
    from augury.elm import ELMClassifier, save_model

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    x = (rng.normal(size=(2000, 8)) + 2.0 * y[:, None]).astype(np.float32)
    save_model(ELMClassifier(n_hidden=128, seed=0).fit(x, y), root / "elm", onnx=False)


def command(system: str, args: argparse.Namespace, port: int, repo: Path) -> list[str]:
    base = [
        sys.executable, "-m", "augury.cli.main", "serve", "--port", str(port),
        "--dtype", args.dtype, "--kv-cache-memory", "256MiB", "--log-level", "warning",
        "--model-repository", str(repo),
    ]  # fmt: skip
    if system == "single":
        return [*base, "--num-threads", str(args.threads)]
    replicas = int(system.removeprefix("ray-"))
    threads = max(1, args.threads // replicas)
    # Logical CPUs 0: the thread budget, not Ray's CPU accounting, decides who runs where.
    return [*base, "--ray", "--replicas", str(replicas), "--num-threads", str(threads),
            "--replica-cpus", "0", "--model-replica-cpus", "0"]  # fmt: skip


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(f"{url}/ready", timeout=5)
            if r.status_code == 200:
                model: str = r.json()["models"][0]
                return model
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"server not ready after {timeout} s:\n{log.read_text()[-3000:]}")


async def run_clients(
    concurrency: int, total: int, send: Any
) -> tuple[list[float], int, int, float]:
    """(latencies, errors, tokens, seconds) of `total` calls of `send` by `concurrency` clients."""
    latencies: list[float] = []
    counters = {"errors": 0, "tokens": 0, "next": 0}

    async def client() -> None:
        while counters["next"] < total:
            i = counters["next"]
            counters["next"] += 1
            start = time.perf_counter()
            ok, tokens = await send(i)
            latencies.append(time.perf_counter() - start)
            counters["errors"] += 0 if ok else 1
            counters["tokens"] += tokens

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, counters["errors"], counters["tokens"], time.perf_counter() - start


async def llm_workload(url: str, model: str, args: argparse.Namespace) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:

        async def send(i: int) -> tuple[bool, int]:
            question = QUESTIONS[i % len(QUESTIONS)]
            body = {
                "model": model,
                "max_tokens": args.max_tokens,
                "temperature": 0,
                "ignore_eos": True,
                "messages": [{"role": "user", "content": question}],
            }
            r = await http.post("/v1/chat/completions", json=body)
            ok = r.status_code == 200
            return ok, r.json()["usage"]["completion_tokens"] if ok else 0

        await send(0)  # warm-up
        return await run_clients(args.concurrency, args.requests, send)


async def predict_workload(url: str, args: argparse.Namespace) -> Any:
    rows = np.random.default_rng(1).normal(size=(2, 8)).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": [2, 8], "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}  # fmt: skip
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:

        async def send(i: int) -> tuple[bool, int]:
            r = await http.post("/v2/models/elm/infer", json=body)
            return r.status_code == 200, 0

        await send(0)
        return await run_clients(16, args.infer_requests, send)


def summarize(system: str, workload: str, measured: Any) -> Result:
    latencies, errors, tokens, seconds = measured
    return Result(system, workload, len(latencies), errors, seconds, len(latencies) / seconds,
                  tokens / seconds, pct(latencies, 50), pct(latencies, 99))  # fmt: skip


def bench_system(system: str, args: argparse.Namespace, repo: Path, logs: Path) -> list[Result]:
    port = free_port()
    log = logs / f"{system}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(command(system, args, port, repo), stdout=sink,
                                stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        model = wait_ready(proc, url, log, timeout=args.start_timeout)
        print(f"{system}: ready in {time.monotonic() - started:.0f} s", flush=True)
        llm = summarize(system, "llm", asyncio.run(llm_workload(url, model, args)))
        predict = summarize(system, "predict", asyncio.run(predict_workload(url, args)))
        return [llm, predict]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", nargs="+", default=["single", "ray-1", "ray-2"])
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--infer-requests", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2, help="torch threads in all (default 2)")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--start-timeout", type=float, default=600)
    args = p.parse_args()
    for system in args.systems:
        if system != "single" and not system.removeprefix("ray-").isdigit():
            p.error(f"unknown system {system!r}: use single or ray-N")
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        make_repository(repo)
        for system in args.systems:
            results += bench_system(system, args, repo, Path(tmp))
    header = ["system", "workload", "requests", "errors", "req/s", "tok/s", "p50 s", "p99 s"]
    rows = [[r.system, r.workload, r.requests, r.errors, r.requests_per_s, r.tokens_per_s,
             r.p50_s, r.p99_s] for r in results]  # fmt: skip
    print_table("Single process vs Ray Serve", header, rows)
    write_json("bench_ray_serve", {"args": vars(args), "results": [asdict(r) for r in results]})


if __name__ == "__main__":
    main()
