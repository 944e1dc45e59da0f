"""Streaming sessions over loopback against a real uvicorn server (in its own process).

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_stream [--seconds 5] [--sessions 100]
        [--rate 100]

What is measured. Every session declares 2 channels, the zscore model and every feature; each
event is one JSON "event" frame, sent on schedule (session s sends its i-th event at
start + (i + s / sessions) / rate, so the sessions' sends interleave evenly). Latency is
per window: from sending the event that completes a window to receiving that window's
"result" frame (both on the client's clock). "events/s" is the events sent divided by the
time from the first send to the last result received, next to the offered rate: a server
that cannot keep up shows fewer events/s and latencies that grow with the length of the run.
The client runs on uvloop with one timer for all sessions' sends and per-message-deflate off
(as `StreamClient` always asks), so it leaves as much of a small machine to the server as it
can (about half a core at 10,000 events/s here). Server and client CPU are given
per event (from /proc for the server process), so runs on a busy machine can be compared.

Rows: 1 session at 1000 events/s; `sessions` sessions at `rate` events/s each (the target:
p99 under 5 ms at 100 x 100/s), both with count windows of 32 events and stride 1 (one result
per event, the heaviest setting), then the same with stride 8 (one result per 8 events); and
one session sending batches of 200 events as fast as it can (throughput). Prints a table;
writes bench/results/bench_stream.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import pct, print_table, run_async, write_json

KEY = "sk-bench-stream-000000"
SIZE = 32
OPTIONS = {"include_ids": False, "queue_size": 4096}


def serve(port: int) -> None:
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import uvicorn

    from augury.server.app import create_app, tune_gc
    from augury.server.config import ServerConfig
    from augury.server.websocket import DirectWebSocketProtocol

    app = create_app(ServerConfig(api_keys={"bench": KEY}), engines=[])  # /v1/streams included
    tune_gc()  # as `augury serve` does
    uvicorn.run(  # as `augury serve` runs it
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
        server_header=False, ws_per_message_deflate=False, ws=DirectWebSocketProtocol,
    )  # fmt: skip


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; nan elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


@dataclass
class Run:
    """One scenario's bookkeeping."""

    stride: int
    sent_at: list[dict[int, float]]
    """Per session: send time of each event that completes a window, by event id."""
    latencies: list[float] = field(default_factory=list)


def event_text(event_id: int, t: float) -> str:
    return (
        f'{{"type":"event","id":{event_id},"t":{t!r},'
        f'"values":{{"x":{float(event_id % 7)!r},"y":1.0}}}}'
    )


async def read_results(client: Any, run: Run, s: int, expected: int) -> None:
    got = 0
    while got < expected:
        frame = await client.recv()
        if frame["type"] == "result":
            sent = run.sent_at[s].pop(frame["window"]["last_id"])
            run.latencies.append(time.perf_counter() - sent)
            got += 1


TICK_S = 0.001
"""The sender wakes at most once a millisecond and sends every event then due (at 10,000
events/s, ~10 per wake-up, from different sessions): a wake-up per event cost the client
more CPU than the events themselves."""


async def send_on_schedule(clients: list[Any], run: Run, n: int, rate: float) -> None:
    """Session s sends event i at start + (i + s / len(clients)) / rate, or up to TICK_S
    later: one timer sleep per group of due events, never one per event. Latency counts
    from the actual send."""
    total, k = n * len(clients), 0
    start = time.perf_counter()
    while k < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate * len(clients)) + 1)
        while k < due:
            i, s = divmod(k, len(clients))
            if i >= SIZE - 1 and (i - SIZE + 1) % run.stride == 0:
                run.sent_at[s][i] = time.perf_counter()
            await clients[s].send_raw(event_text(i, i / rate))
            k += 1
        await asyncio.sleep(max(TICK_S, start + k / (rate * len(clients)) - time.perf_counter()))


async def scenario(
    url: str, pid: int, sessions: int, seconds: float, rate: float, stride: int
) -> dict[str, Any]:
    from augury.stream.client import StreamClient

    window = {"kind": "count", "size": SIZE, "stride": stride}
    clients = [
        StreamClient(url, "zscore", ["x", "y"], window=window, options=OPTIONS, api_key=KEY)
        for _ in range(sessions)
    ]
    await asyncio.gather(*(c.open() for c in clients))
    n = int(seconds * rate)
    run = Run(stride, [{} for _ in clients])
    expected = (n - SIZE) // stride + 1
    cpu0, client0, start = server_cpu_s(pid), time.process_time(), time.perf_counter()
    readers = [
        asyncio.create_task(read_results(c, run, s, expected)) for s, c in enumerate(clients)
    ]
    await send_on_schedule(clients, run, n, rate)
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    done = time.perf_counter()
    events = n * sessions
    server_cpu, client_cpu = server_cpu_s(pid) - cpu0, time.process_time() - client0
    await asyncio.gather(*(c.close() for c in clients))
    ms = [x * 1e3 for x in run.latencies]
    return {
        "sessions": sessions,
        "rate_per_session": rate,
        "window": window,
        "events": events,
        "offered_events_per_s": rate * sessions,
        "events_per_s": events / (done - start),
        "windows": len(ms),
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms),
        "server_cpu_us_per_event": server_cpu / events * 1e6,
        "client_cpu_us_per_event": client_cpu / events * 1e6,
    }


async def throughput(url: str, n: int, batch: int) -> float:
    """Events/s of one session sending batch frames as fast as it can (window 32/1)."""
    from augury.stream.client import StreamClient

    window = {"kind": "count", "size": SIZE, "stride": 1}
    client = StreamClient(url, "zscore", ["x", "y"], window=window, options=OPTIONS, api_key=KEY)
    await client.open()
    start = time.perf_counter()

    async def read() -> None:
        got = 0
        while got < n - SIZE + 1:
            got += (await client.recv())["type"] == "result"

    reader = asyncio.create_task(read())
    for s in range(0, n, batch):
        events = [
            {"t": i * 0.001, "values": {"x": float(i % 7), "y": 1.0}} for i in range(s, s + batch)
        ]
        await client.send(events)
    await reader
    elapsed = time.perf_counter() - start
    await client.close()
    return n / elapsed


def start_server() -> tuple[mp.process.BaseProcess, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = mp.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    server.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return server, port
        except OSError:
            if time.monotonic() > deadline:
                server.terminate()
                raise RuntimeError("the benchmark server did not start") from None
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    server, port = start_server()
    url = f"ws://127.0.0.1:{port}/v1/streams"
    assert server.pid is not None
    plan = [(1, 1000.0, 1), (args.sessions, args.rate, 1), (args.sessions, args.rate, 8)]
    try:
        runs = [run_async(scenario(url, server.pid, n, args.seconds, r, k)) for n, r, k in plan]
        best = run_async(throughput(url, 20_000, 200))
    finally:
        server.terminate()
        server.join(10)
    rows: list[list[Any]] = [
        [
            f"{r['sessions']} x {r['rate_per_session']:g}/s",
            f"{r['window']['size']}/{r['window']['stride']}",
            r["windows"],
            f"{r['events_per_s']:,.0f} of {r['offered_events_per_s']:,.0f}",
            r["p50_ms"],
            r["p99_ms"],
            r["max_ms"],
            r["server_cpu_us_per_event"],
            r["client_cpu_us_per_event"],
        ]
        for r in runs
    ]
    rows.append(
        ["1 session, batches of 200", "32/1", 20_000 - SIZE + 1, f"{best:,.0f}", "", "", "", "", ""]
    )
    header = [
        "scenario",
        "window",
        "windows",
        "events/s (of offered)",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU us/event",
        "client CPU us/event",
    ]
    title = (
        "Streaming sessions over loopback (zscore, 2 channels, one event per frame); latency: "
        "send of the event that completes a window -> receipt of that window's result"
    )
    print_table(title, header, rows)
    write_json("bench_stream", {"scenarios": runs, "throughput_events_per_s": best})


if __name__ == "__main__":
    main()
