"""Streaming sessions over loopback against a real uvicorn server (in its own process).

    .venv/bin/python -m bench.bench_stream [--seconds 5] [--sessions 100] [--rate 100]

Each session sends one event per frame on schedule at `rate` events/s, with count windows of
32 events and stride 1 (one result per event, the heaviest setting) and the zscore model.
Per-event latency: from sending an event to receiving the result of the window it completes.
Scenarios: 1 session at 1000 events/s, `sessions` sessions at `rate` events/s each, and one
session sending batches as fast as it can (throughput). Prints a table; writes
bench/results/bench_stream.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import time
from typing import Any

from bench.common import pct, print_table, write_json

KEY = "sk-bench-stream-000000"
WINDOW = {"kind": "count", "size": 32, "stride": 1}
OPTIONS = {"include_ids": False, "queue_size": 4096}


def serve(port: int) -> None:
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import uvicorn

    from augury.server.app import create_app
    from augury.server.auth import ApiKeys
    from augury.server.config import ServerConfig
    from augury.server.streams import create_stream_router

    config = ServerConfig(api_keys={"bench": KEY})
    app = create_app(config, engines=[])
    app.include_router(create_stream_router(ApiKeys(config.api_keys)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def session(url: str, seconds: float, rate: float, latencies: list[float]) -> int:
    from augury.stream.client import StreamClient

    client = StreamClient(url, "zscore", ["x", "y"], window=WINDOW, options=OPTIONS, api_key=KEY)
    await client.open()
    sent_at: dict[int, float] = {}
    n = int(seconds * rate)
    done = asyncio.Event()

    async def read() -> None:
        got = 0
        while got < n - WINDOW["size"] + 1:
            frame = await client.recv()
            if frame["type"] == "result":
                latencies.append(time.perf_counter() - sent_at.pop(frame["window"]["last_id"]))
                got += 1
        done.set()

    reader = asyncio.create_task(read())
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at[i] = time.perf_counter()
        await client.send([{"t": i / rate, "values": {"x": float(i % 7), "y": 1.0}}])
    await asyncio.wait_for(done.wait(), 60)
    await reader
    await client.close()
    return n


async def throughput(url: str, n: int, batch: int) -> float:
    from augury.stream.client import StreamClient

    client = StreamClient(url, "zscore", ["x", "y"], window=WINDOW, options=OPTIONS, api_key=KEY)
    await client.open()
    start = time.perf_counter()

    async def read() -> None:
        got = 0
        while got < n - WINDOW["size"] + 1:
            got += (await client.recv())["type"] == "result"

    reader = asyncio.create_task(read())
    for s in range(0, n, batch):
        await client.send(
            [{"t": i * 0.001, "values": {"x": float(i % 7), "y": 1.0}} for i in range(s, s + batch)]
        )
    await reader
    elapsed = time.perf_counter() - start
    await client.close()
    return n / elapsed


async def scenario(url: str, sessions: int, seconds: float, rate: float) -> dict[str, Any]:
    latencies: list[float] = []
    start = time.perf_counter()
    counts = await asyncio.gather(
        *(session(url, seconds, rate, latencies) for _ in range(sessions))
    )
    elapsed = time.perf_counter() - start
    ms = [x * 1e3 for x in latencies]
    return {
        "sessions": sessions,
        "rate_per_session": rate,
        "events": sum(counts),
        "events_per_s": sum(counts) / elapsed,
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = mp.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    server.start()
    url = f"ws://127.0.0.1:{port}/v1/streams"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark server did not start") from None
            time.sleep(0.1)
    try:
        one = asyncio.run(scenario(url, 1, args.seconds, 1000.0))
        many = asyncio.run(scenario(url, args.sessions, args.seconds, args.rate))
        best = asyncio.run(throughput(url, 20_000, 200))
    finally:
        server.terminate()
        server.join(10)
    rows = [
        [
            f"1 x {one['rate_per_session']:g}/s",
            one["events"],
            one["events_per_s"],
            one["p50_ms"],
            one["p99_ms"],
            one["max_ms"],
        ],
        [
            f"{many['sessions']} x {many['rate_per_session']:g}/s",
            many["events"],
            many["events_per_s"],
            many["p50_ms"],
            many["p99_ms"],
            many["max_ms"],
        ],
        ["1 session, batches of 200", 20_000, best, "", "", ""],
    ]
    header = ["scenario", "events", "events/s", "p50 ms", "p99 ms", "max ms"]
    print_table("Streaming sessions over loopback (zscore, count window 32/1)", header, rows)
    write_json(
        "bench_stream",
        {
            "one_session": one,
            "many_sessions": many,
            "throughput_events_per_s": best,
            "window": WINDOW,
        },
    )


if __name__ == "__main__":
    main()
