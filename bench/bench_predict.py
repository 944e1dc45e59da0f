"""Predictive serving: in-process latency vs loopback HTTP, and throughput with dynamic batching
on and off.

    .venv/bin/python -m bench.bench_predict --models models/ [--seconds 3] [--concurrency 1 16 64]
        [--repeat 3]

Needs the example models (python -m augury.predict.examples.build --out models/). For each of
the fraud model (one tabular row per request) and an image model (one PNG per request;
digits by default, --image-model efficientnet_lite0 for the ImageNet one): the in-process
pipeline latency of one request, then a server in a separate process (`augury serve`'s app)
with batching on (the model's config) and off (max_batch_size 1), loaded by 1/16/64 clients
that send requests back to back over keep-alive connections through a minimal asyncio
HTTP/1.1 client (so the client's own overhead stays small); each cell is the median of
--repeat runs by throughput. Prints a table and writes
bench/results/bench_predict.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import free_port, median, pct, print_table, run_async, write_json


def serve(root: str, port: int, batching: str) -> None:
    """The server process: `augury serve`'s app (every middleware: request ids, API keys,
    body limit, metrics) over the repository `root`, batching "on" or "off", logging at warning
    (`augury serve --log-level warning`: no access line per request)."""
    import uvicorn

    from augury.predict.repository import ModelRepository
    from augury.server.app import create_app, tune_gc
    from augury.server.config import ServerConfig
    from augury.server.logging import configure_logging

    configure_logging("warning")
    override = {"max_batch_size": 1, "preferred_batch_sizes": ()} if batching == "off" else {}
    repo = ModelRepository(root, poll_interval_s=None, batching=override)
    app = create_app(ServerConfig(batch_dir=None), engines=[], repository=repo)
    tune_gc()  # as `augury serve` does
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                server_header=False)  # fmt: skip


def payloads(root: Path, image_model: str) -> dict[str, tuple[bytes, Any]]:
    """model -> (JSON body of one request, the same request for the in-process pipeline)."""
    from augury.predict.config import load_config

    fraud_cfg = load_config(root / "fraud")
    d = fraud_cfg.inputs[0].shape[1]
    row = np.abs(np.random.default_rng(0).normal(size=(1, d))).astype(np.float32)
    row[:, -10:] = 0.0  # flags and one-hot columns in range
    fraud = {"inputs": [{"name": "input", "shape": [1, d], "datatype": "FP32",
                         "data": row.ravel().tolist()}]}  # fmt: skip
    if image_model == "digits":
        from sklearn.datasets import load_digits

        from augury.predict.examples.digits import to_png

        png = to_png(load_digits().images[0])
    else:
        from augury.predict.examples.imagenet import sample_png

        png = sample_png("chelsea")
    image = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                         "data": [base64.b64encode(png).decode()]}]}  # fmt: skip
    return {
        "fraud": (json.dumps(fraud).encode(), {"input": row}),
        image_model: (json.dumps(image).encode(), {"image": np.array([png], dtype=object)}),
    }


def in_process_ms(root: Path, name: str, inputs: dict[str, Any], n: int = 300) -> float:
    from augury.predict.config import load_config
    from augury.predict.pipeline import InferRequest, Pipeline

    folder = root / name
    version = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    pipeline = Pipeline.load(load_config(folder), folder / str(version))
    request = InferRequest(inputs)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        pipeline.predict(request)
        times.append((time.perf_counter() - t) * 1000)
    return median(times[n // 10 :])


async def client(port: int, request: bytes, stop: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"server answered {head[:40]!r}: {body[:200]!r}")
            latencies.append((time.perf_counter() - t) * 1000)
    finally:
        writer.close()


async def load(
    port: int, model: str, body: bytes, clients: int, seconds: float
) -> dict[str, float]:
    request = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    warm: list[float] = []
    await asyncio.gather(
        *(client(port, request, time.perf_counter() + 0.5, warm) for _ in range(clients))
    )
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(client(port, request, start + seconds, latencies) for _ in range(clients))
    )
    elapsed = time.perf_counter() - start
    return {
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
    }


def start_server(root: Path, batching: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.bench_predict", "--serve", str(root), str(port), batching]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=3, metavar=("ROOT", "PORT", "BATCHING"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--image-model", default="digits")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median shows")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    import torch

    torch.set_num_threads(1)
    bodies = payloads(args.models, args.image_model)
    rows, results = [], []
    for model, (_, inputs) in bodies.items():
        ms = in_process_ms(args.models, model, inputs)
        results.append({"model": model, "mode": "in-process", "p50_ms": ms})
        rows.append([model, "in-process", 1, "", f"{ms:.3f}", ""])
    for batching in ("on", "off"):
        proc, port = start_server(args.models, batching)
        try:
            for model, (body, _) in bodies.items():
                for clients in args.concurrency:
                    runs = [
                        run_async(load(port, model, body, clients, args.seconds))
                        for _ in range(args.repeat)
                    ]
                    runs.sort(key=lambda r: r["throughput_rps"])
                    r = runs[len(runs) // 2]  # the median run by throughput
                    results.append({"model": model, "batching": batching, "clients": clients, **r})
                    rows.append([model, f"http, batching {batching}", clients,
                                 f"{r['throughput_rps']:.0f}", f"{r['p50_ms']:.3f}",
                                 f"{r['p99_ms']:.3f}"])  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(10)
    header = ["model", "mode", "clients", "req/s", "p50 ms", "p99 ms"]
    print_table("Predictive serving (KServe v2 JSON over loopback)", header, rows)
    write_json(
        "bench_predict", {"seconds": args.seconds, "repeat": args.repeat, "results": results}
    )


if __name__ == "__main__":
    main()
