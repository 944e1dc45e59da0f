"""A small async client for `/v1/streams` that can resume without losing or repeating events.

    async with StreamClient("ws://127.0.0.1:8000/v1/streams", "zscore", ["x"],
                            api_key=KEY) as client:
        await client.send([{"t": 0.0, "values": {"x": 1.0}}])
        frame = await client.recv()          # a result, dropped, error or stats frame
        ...
        await client.resume()                # after a lost connection: same session

Every frame sent is kept until a frame from the server acknowledges its last event id
(`acked_event_id` on results, `last_event_id` on opened/stats); `resume()` reconnects, gets
the results it missed (from `last_result_seq` on) and resends what was not acknowledged. The
server skips ids it already has, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
import orjson
from websockets.asyncio.client import ClientConnection, connect

from augury.stream.protocol import encode_binary

Frame = dict[str, Any]


class StreamError(RuntimeError):
    """The server refused the session (its error frame is in `frame`)."""

    def __init__(self, frame: Frame) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.frame = frame


class StreamClient:
    """See the module docstring."""

    def __init__(
        self,
        url: str,
        model: str,
        channels: Sequence[str],
        *,
        window: Frame | None = None,
        options: Frame | None = None,
        api_key: str | None = None,
        max_size: int = 1 << 22,
    ) -> None:
        self.url = url
        self.open_frame: Frame = {"type": "open", "model": model, "channels": list(channels)}
        if window is not None:
            self.open_frame["window"] = window
        if options is not None:
            self.open_frame["options"] = options
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_size = max_size
        self.ws: ClientConnection | None = None
        self.session_id: str | None = None
        self.resume_token: str | None = None
        self.last_result_seq = -1
        self.next_id = 0
        self.acked_id = -1
        self._unacked: deque[tuple[int, str | bytes]] = deque()  # (last event id, frame)
        self._sending = asyncio.Lock()  # a resume's resends go out before any newer frame

    async def __aenter__(self) -> StreamClient:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def _connect(self, first: Frame) -> Frame:
        # No per-message deflate: frames are small, and compressing every one costs both
        # ends more CPU than it saves on the wire.
        self.ws = await connect(
            self.url, additional_headers=self.headers, max_size=self.max_size, compression=None
        )
        await self.ws.send(json.dumps(first))
        reply: Frame = json.loads(await self.ws.recv())
        if reply.get("type") == "error":
            await self.ws.close()
            raise StreamError(reply)
        self.session_id = reply["session_id"]
        self.resume_token = reply.get("resume_token", self.resume_token)
        self._ack(int(reply["last_event_id"]))
        self.next_id = max(self.next_id, self.acked_id + 1)
        return reply

    async def open(self) -> Frame:
        """Open the session; returns the "opened" frame."""
        return await self._connect(self.open_frame)

    async def resume(self) -> Frame:
        """Reconnect to the same session and resend every unacknowledged frame."""
        if self.session_id is None or self.resume_token is None:
            raise RuntimeError("nothing to resume: open() a session first")
        async with self._sending:
            if self.ws is not None:
                await self.ws.close()
            first = {
                "type": "resume",
                "session_id": self.session_id,
                "resume_token": self.resume_token,
                "last_result_seq": self.last_result_seq,
            }
            reply = await self._connect(first)
            assert self.ws is not None
            for _, frame in list(self._unacked):
                await self.ws.send(frame)
            return reply

    def _ack(self, event_id: int) -> None:
        self.acked_id = max(self.acked_id, event_id)
        while self._unacked and self._unacked[0][0] <= self.acked_id:
            self._unacked.popleft()

    async def _send(self, last_id: int, frame: str | bytes) -> None:
        async with self._sending:
            self._unacked.append((last_id, frame))
            if self.ws is None:
                raise RuntimeError("not connected: open() first")
            await self.ws.send(frame)

    async def send(self, events: Sequence[Frame]) -> list[int]:
        """Send events ({"t", "values", optional "label"}) as one frame; returns their ids."""
        batch = []
        for event in events:
            batch.append({**event, "id": self.next_id})
            self.next_id += 1
        frame: Frame = (
            {"type": "event", **batch[0]} if len(batch) == 1 else {"type": "batch", "events": batch}
        )
        await self._send(self.next_id - 1, json.dumps(frame))
        return [e["id"] for e in batch]

    async def send_binary(self, t0: float, rows: np.ndarray[Any, Any]) -> list[int]:
        """Send rows (n, 1 + c) of (dt, values...) as one binary frame; returns their ids."""
        first = self.next_id
        self.next_id += rows.shape[0]
        await self._send(self.next_id - 1, encode_binary(first, t0, rows))
        return list(range(first, self.next_id))

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a frame as is (tests of bad input); it is not kept for resending."""
        if self.ws is None:
            raise RuntimeError("not connected: open() first")
        await self.ws.send(frame)

    async def recv(self) -> Frame:
        """The next frame from the server (bookkeeping of acks and result seqs done)."""
        if self.ws is None:
            raise RuntimeError("not connected: open() first")
        frame: Frame = orjson.loads(await self.ws.recv())
        kind = frame.get("type")
        if kind == "result":
            self.last_result_seq = max(self.last_result_seq, int(frame["seq"]))
            self._ack(int(frame["acked_event_id"]))
        elif kind == "stats":
            self._ack(int(frame["last_event_id"]))
        return frame

    async def stats(self) -> Frame:
        """Ask for the counters; frames received meanwhile are dropped (use between phases)."""
        await self.send_raw(json.dumps({"type": "stats"}))
        while True:
            frame = await self.recv()
            if frame.get("type") == "stats":
                return frame

    async def close(self) -> Frame | None:
        """End the session for good; returns the final stats frame."""
        if self.ws is None:
            return None
        await self.send_raw(json.dumps({"type": "close"}))
        final = None
        try:
            while True:
                frame = await self.recv()
                if frame.get("type") == "stats":
                    final = frame
                if frame.get("type") == "closed":
                    break
        finally:
            await self.ws.close()
            self.ws = None
        return final
