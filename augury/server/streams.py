"""`/v1/streams`: streaming inference sessions over a WebSocket (frames in augury/stream/protocol).

The API-key middleware only sees HTTP requests, so this route checks the key itself, with the
server's `ApiKeys` (constant-time): `Authorization: Bearer KEY`, `x-api-key: KEY` or
`?api_key=KEY` (browsers cannot set headers on WebSockets). A refused handshake gets the
server's 401 error envelope (or close code 1008 where the server cannot send a response).

Where the server offers the direct path (`augury serve`: augury/server/websocket.py), good
event frames are queued as they are parsed and results written as soon as they are scored;
every other frame, and everything under other servers, goes through ASGI.

Mount (in the app factory):

    from augury.server.streams import create_stream_router
    app.include_router(create_stream_router(ApiKeys(config.api_keys)))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from augury.server.auth import ANONYMOUS, ApiKeys, bearer_token
from augury.server.errors import APIError
from augury.server.websocket import direct_socket
from augury.stream.config import StreamConfig
from augury.stream.manager import StreamManager
from augury.stream.protocol import (
    BatchFrame,
    CloseFrame,
    EventFrame,
    EventIn,
    FrameError,
    OpenFrame,
    ResumeFrame,
    StatsFrame,
    parse_binary,
    parse_text,
)
from augury.stream.registry import ModelRegistry
from augury.stream.session import Session
from augury.stream.windows import Event

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008


class StreamRouter(APIRouter):
    """The /v1/streams route with its session manager (tests and shutdown reach it here)."""

    def __init__(self, manager: StreamManager, keys: ApiKeys) -> None:
        super().__init__(tags=["streams"])
        self.manager = manager
        self.keys = keys
        self.add_api_websocket_route("/v1/streams", self.endpoint)

    async def endpoint(self, websocket: WebSocket) -> None:
        key_name = await _authenticate(websocket, self.keys)
        if key_name is None:
            return
        await websocket.accept()
        await Connection(websocket, self.manager, key_name).run()


def create_stream_router(
    keys: ApiKeys, config: StreamConfig | None = None, registry: ModelRegistry | None = None
) -> StreamRouter:
    """The streaming route, checking `keys` (the server's), with its own session manager."""
    return StreamRouter(StreamManager(config or StreamConfig(), registry), keys)


async def _authenticate(websocket: WebSocket, keys: ApiKeys) -> str | None:
    """The key's name, or None after refusing the handshake."""
    if not keys.enabled:
        return ANONYMOUS
    token = bearer_token(websocket.scope) or websocket.query_params.get("api_key") or None
    name = keys.identify(token) if token else None
    if name is not None:
        return name
    message = (
        "missing API key: send 'Authorization: Bearer YOUR_KEY' or '?api_key=YOUR_KEY'"
        if token is None
        else "incorrect API key provided"
    )
    error = APIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error.response())
    else:
        await websocket.close(code=POLICY_VIOLATION, reason=message)
    return None


def _error(code: str, message: str, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "fatal": fatal}


class Connection:
    """One WebSocket: a first frame that opens or resumes a session, then events."""

    def __init__(self, websocket: WebSocket, manager: StreamManager, key_name: str) -> None:
        self.ws = websocket
        self.manager = manager
        self.key_name = key_name
        self.config = manager.config
        self.direct = direct_socket(websocket.scope)
        """The server's direct path for event frames and results (augury/server/websocket)."""
        self._loop = asyncio.get_running_loop()
        self._waiting_since: float | None = None
        """When the reader began waiting for the frame it waits for (None: not waiting); a
        frame taken on the direct path (`_take`) counts as the wait's end and a new start."""
        self._idle = False
        self._watchdog: asyncio.TimerHandle | None = None

    async def _receive(self) -> str | bytes | None:
        """The next frame's payload; None on disconnect; TimeoutError when idle too long.

        The idle limit is kept by one watchdog timer per connection (`_watch`), which wakes
        once per idle period, not by a timeout context per frame (that cost ~6 us a frame,
        a tenth of the server's whole work per event at 10,000 events/s)."""
        self._waiting_since = self._loop.time()
        try:
            message = await self.ws.receive()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._idle and task is not None and task.uncancel() == 0:
                raise TimeoutError from None  # the watchdog's cancel, not anybody else's
            raise
        finally:
            self._waiting_since = None
        if message["type"] == "websocket.disconnect":
            return None
        payload: str | bytes | None = message.get("text")
        return payload if payload is not None else message.get("bytes", b"")

    async def _send(self, text: str) -> None:
        await self.ws.send_text(text)

    def _watch(self, task: asyncio.Task[None]) -> None:
        """Cancel `task` once it has waited `idle_timeout_s` for one frame (see _receive)."""
        loop = self._loop
        limit = self.config.idle_timeout_s

        def check() -> None:
            since = self._waiting_since
            if since is not None and loop.time() - since >= limit:
                self._idle = True
                task.cancel()
                return
            due = (since if since is not None else loop.time()) + limit
            self._watchdog = loop.call_at(due, check)

        self._watchdog = loop.call_at(loop.time() + limit, check)

    async def run(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._watch(task)
        try:
            await self._serve()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()

    async def _serve(self) -> None:
        session = None
        try:
            session = await self._start()
            if session is not None:
                await self._read(session)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            pass  # the client went away mid-send
        finally:
            if self.direct is not None:
                self.direct.detach()
            if session is not None and session.id in self.manager.live:
                await self.manager.detach(session)

    async def _start(self) -> Session | None:
        """Read frames until one opens or resumes a session (bad ones get error frames)."""
        while True:
            try:
                payload = await self._receive()
            except TimeoutError:
                await self._close("idle_timeout", "no open frame in time")
                return None
            if payload is None:
                return None
            try:
                if isinstance(payload, bytes):
                    raise FrameError("not_open", "send an 'open' or 'resume' frame first")
                frame = parse_text(payload)
                if isinstance(frame, OpenFrame):
                    session, token = self.manager.open(frame, self.key_name)
                    await self._opened(session, token, resumed=False)
                elif isinstance(frame, ResumeFrame):
                    session = await self.manager.resume(frame, self.key_name)
                    await self._opened(session, None, resumed=True)
                    for text in session.core.replay(frame.last_result_seq):
                        await session.send(text)
                else:
                    raise FrameError("not_open", "send an 'open' or 'resume' frame first")
                return session
            except FrameError as exc:
                fatal = exc.code == "too_many_sessions"
                await self.ws.send_json(_error(exc.code, exc.message, fatal))
                if fatal:
                    await self.ws.close(code=POLICY_VIOLATION, reason=exc.code)
                    return None

    async def _opened(self, session: Session, token: str | None, resumed: bool) -> None:
        spec = session.core.spec
        frame: dict[str, Any] = {
            "type": "opened",
            "session_id": session.id,
            "resumed": resumed,
            "model": spec.model,
            "channels": list(spec.channels),
            "window": {
                "kind": spec.window_kind,
                "size": spec.window_size,
                "stride": spec.window_stride,
            },
            "last_event_id": session.core.last_event_id,
            "next_seq": session.core.next_seq,
        }
        if token is not None:
            frame["resume_token"] = token
        session.attach(self._send, self.direct.send_nowait if self.direct is not None else None)
        await session.send(frame)

    async def _read(self, session: Session) -> None:
        def take(payload: str | bytes) -> bool:
            return self._take(session, payload)

        while True:
            if self.direct is not None:
                self.direct.attach(take)  # (refused while frames wait for us: next time)
            try:
                payload = await self._receive()
            except TimeoutError:
                await self._close(
                    "idle_timeout",
                    f"nothing received for {self.config.idle_timeout_s:g} s; resume to go on",
                    session,
                )
                return
            if payload is None:
                return
            try:
                if len(payload) > self.config.max_frame_bytes:
                    raise FrameError(
                        "frame_too_large",
                        f"frame of {len(payload)} bytes exceeds the limit of "
                        f"{self.config.max_frame_bytes}; send smaller batches",
                    )
                if isinstance(payload, bytes):
                    await session.put(self._binary_events(session, payload))
                    continue
                frame = parse_text(payload)
                if isinstance(frame, EventFrame | BatchFrame):
                    events = [frame] if isinstance(frame, EventFrame) else frame.events
                    await session.put(self._events(session, events))
                elif isinstance(frame, StatsFrame):
                    await session.send(session.stats())
                elif isinstance(frame, CloseFrame):
                    await session.send(session.stats())
                    await self.manager.close(session)
                    with contextlib.suppress(Exception):
                        await self.ws.send_json({"type": "closed", "session_id": session.id})
                        await self.ws.close(code=1000)
                    return
                else:
                    raise FrameError("already_open", "this connection already has a session")
            except FrameError as exc:
                session.core.counters.bad_frames += 1
                await session.send(_error(exc.code, exc.message))

    def _take(self, session: Session, payload: str | bytes) -> bool:
        """The direct path: queue the events of a good event, batch or binary frame as it
        arrives; any other frame, a bad one, or one the queue cannot take now ('block') goes
        back to `_read` (False), which answers or waits as for every frame."""
        if len(payload) > self.config.max_frame_bytes:
            return False
        try:
            if isinstance(payload, bytes):
                events = self._binary_events(session, payload)
            else:
                frame = parse_text(payload)
                if isinstance(frame, EventFrame):
                    events = self._events(session, [frame])
                elif isinstance(frame, BatchFrame):
                    events = self._events(session, frame.events)
                else:
                    return False
        except FrameError:
            return False
        if not session.put_nowait(events):
            return False
        self._waiting_since = self._loop.time()  # the idle limit counts from here
        return True

    async def _close(self, code: str, message: str, session: Session | None = None) -> None:
        frame = _error(code, message, fatal=True)
        with contextlib.suppress(Exception):
            if session is not None:
                await session.send(frame)
            else:
                await self.ws.send_json(frame)
            await self.ws.close(code=1000)

    def _events(self, session: Session, frames: list[EventFrame] | list[EventIn]) -> list[Event]:
        """Events in channel order; FrameError for the whole frame if any is bad."""
        channels = session.core.spec.channels
        next_id = session.core.last_event_id + 1
        out: list[Event] = []
        for i, e in enumerate(frames):
            where = "event" if isinstance(e, EventFrame) else f"events[{i}]"
            if e.values.keys() != set(channels):
                extra = sorted(set(e.values) - set(channels))
                missing = [c for c in channels if c not in e.values]
                problem = (
                    f"unknown channel(s) {extra}" if extra else f"missing channel(s) {missing}"
                )
                raise FrameError(
                    "unknown_field" if extra else "missing_field",
                    f"{where}.values: {problem}; this session's channels are {list(channels)}",
                )
            event_id = e.id if e.id is not None else next_id
            if out and event_id <= out[-1].id:
                raise FrameError(
                    "invalid_frame",
                    f"{where}.id: ids must increase within a frame, "
                    f"got {event_id} after {out[-1].id}",
                )
            values = np.fromiter(
                (e.values[c] for c in channels), dtype=np.float64, count=len(channels)
            )
            out.append(Event(event_id, e.t, values, e.label))
            next_id = event_id + 1
        return out

    def _binary_events(self, session: Session, payload: bytes) -> list[Event]:
        n_channels = len(session.core.spec.channels)
        first, t0, rows = parse_binary(payload, n_channels)
        times = t0 + rows[:, 0].astype(np.float64)  # (n,)
        values = rows[:, 1:].astype(np.float64)  # (n, c)
        return [Event(first + i, float(times[i]), values[i], None) for i in range(rows.shape[0])]
