"""`augury stream`: replay a CSV file into a streaming session at a given rate, print results.

    augury stream --model zscore --replay vibration.csv --rate 200/s \
        [--url ws://127.0.0.1:8000/v1/streams] [--api-key KEY] [--window count:64:32] \
        [--channels x,y] [--time-column t] [--label-column y]

Rows are sent on schedule (row i at start + i / rate), grouped into one frame per 10 ms tick;
each result prints as one line as soon as it arrives. A dropped connection is resumed: the
session continues with no event lost or counted twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from augury.server.config import API_KEYS_ENV
from augury.stream.client import StreamClient
from augury.tasks import cancel_and_wait

TICK_S = 0.01


def add_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "stream", help="replay a CSV into a streaming inference session"
    )
    p.add_argument("--model", required=True, help="stream model: zscore, elm-autoencoder, ...")
    p.add_argument("--replay", required=True, metavar="FILE.csv", help="rows to send")
    p.add_argument("--rate", type=parse_rate, default=200.0, help="rows per second (200/s)")
    p.add_argument("--url", default="ws://127.0.0.1:8000/v1/streams")
    p.add_argument("--api-key", default=None, help=f"default: first key of ${API_KEYS_ENV}")
    p.add_argument("--window", type=parse_window, default=None, help="count:64:32 or time:1:0.5")
    p.add_argument("--channels", default=None, help="comma-separated columns (default: all)")
    p.add_argument("--time-column", default="t", help="timestamps (default t; else row / rate)")
    p.add_argument("--label-column", default=None, help="labels for online learning")
    p.add_argument("--quiet", action="store_true", help="print anomalies and the summary only")
    p.set_defaults(func=run)


def parse_rate(text: str) -> float:
    """'200/s', '200' or '12000/min' -> events per second."""
    value, _, unit = text.strip().partition("/")
    seconds = {"": 1.0, "s": 1.0, "min": 60.0, "m": 60.0}.get(unit.strip().lower())
    try:
        rate = float(value) / seconds if seconds else -1.0
    except ValueError:
        rate = -1.0
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (use e.g. 200/s or 12000/min)")
    return rate


def parse_window(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("count", "time"):
        raise argparse.ArgumentTypeError(f"not a window: {text!r} (count:64:32 or time:1:0.5)")
    try:
        return {"kind": parts[0], "size": float(parts[1]), "stride": float(parts[2])}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a window: {text!r} ({exc})") from exc


@dataclass
class Table:
    channels: list[str]
    events: list[dict[str, Any]]


def read_csv(
    path: str, channels: str | None, time_col: str, label_col: str | None, rate: float
) -> Table:
    """Events from a CSV; ValueError naming a missing or non-numeric column."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no data rows")
    columns = list(rows[0])
    chosen = (
        channels.split(",")
        if channels
        else [c for c in columns if c not in (time_col, label_col, "fault", "label")]
    )
    for name in [*chosen, *([label_col] if label_col else [])]:
        if name not in columns:
            raise ValueError(f"{path} has no column {name!r}; columns are {columns}")
    events = []
    for i, row in enumerate(rows):
        try:
            t = float(row[time_col]) if time_col in row else i / rate
            event: dict[str, Any] = {"t": t, "values": {c: float(row[c]) for c in chosen}}
            if label_col and row[label_col] != "":
                event["label"] = float(row[label_col])
        except ValueError as exc:
            raise ValueError(
                f"{path} row {i + 2}: {exc}; every chosen column must be numeric"
            ) from exc
        events.append(event)
    return Table(chosen, events)


def run(args: argparse.Namespace) -> int:
    table = read_csv(args.replay, args.channels, args.time_column, args.label_column, args.rate)
    key = args.api_key or (os.environ.get(API_KEYS_ENV, "").split(",")[0].strip() or None)
    client = StreamClient(args.url, args.model, table.channels, window=args.window, api_key=key)
    summary = asyncio.run(replay(client, table.events, args.rate, args.quiet))
    print(json.dumps(summary), file=sys.stderr)
    return 0


async def replay(
    client: StreamClient, events: list[dict[str, Any]], rate: float, quiet: bool
) -> dict[str, Any]:
    """Send on schedule while a reader prints results; returns the final stats."""
    await client.open()
    done = asyncio.Event()
    counts = {"results": 0, "anomalies": 0}

    async def read() -> None:
        while True:
            try:
                frame = await client.recv()
            except ConnectionClosed:
                if done.is_set():
                    return
                await asyncio.sleep(0.2)
                await client.resume()
                continue
            if frame.get("type") == "result":
                counts["results"] += 1
                counts["anomalies"] += int(bool(frame.get("anomaly")))
                if not quiet or frame.get("anomaly"):
                    print(format_result(frame), flush=True)
            elif frame.get("type") in ("error", "dropped"):
                print(json.dumps(frame), file=sys.stderr, flush=True)

    reader = asyncio.create_task(read())
    start = time.monotonic()
    sent = 0
    while sent < len(events):
        due = min(len(events), int((time.monotonic() - start) * rate) + 1)
        if due > sent:
            with contextlib.suppress(ConnectionClosed):  # kept and resent by the resume
                await client.send(events[sent:due])
            sent = due
        await asyncio.sleep(TICK_S)
    await asyncio.sleep(0.5)  # let the last results arrive
    done.set()
    await cancel_and_wait(reader)
    stats = await client.close() or {}
    return {**counts, "sent": sent, "seconds": round(time.monotonic() - start, 2), **stats}


def format_result(frame: dict[str, Any]) -> str:
    w = frame["window"]
    parts = [f"#{frame['seq']:<5d} t=[{w['first_t']:.3f}, {w['last_t']:.3f}] n={w['count']}"]
    if "score" in frame:
        threshold = frame.get("threshold")
        limit = "warming up" if threshold is None else f"threshold={threshold:.4g}"
        parts.append(f"score={frame['score']:.4g} {limit}")
    if frame.get("anomaly"):
        parts.append("ANOMALY")
    if "prediction" in frame:
        parts.append("prediction=" + ",".join(f"{v:.4g}" for v in frame["prediction"]))
    if "label" in frame:
        parts.append(f"label={frame['label']:g}")
    return "  ".join(parts)
