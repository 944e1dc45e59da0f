"""Server-Sent Events and client disconnects.

A streaming response is cancelled by Starlette when the client goes away; the cancellation runs
through the engine's `generate()` iterator, whose exit aborts the request. A non-streaming
handler has no such watcher, so `until_disconnected` races its work against `http.disconnect`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar, cast

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from augury.server.errors import ClientDisconnected

T = TypeVar("T")

SSE_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(data: str) -> bytes:
    """One `data:` event; `data` is a JSON document on one line."""
    return b"data: " + data.encode() + b"\n\n"


def sse_response(
    events: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]] | None = None
) -> StreamingResponse:
    """An event stream; `on_close` runs after it ends, however it ends (client gone too)."""
    background = BackgroundTask(on_close) if on_close is not None else None
    return StreamingResponse(
        events, media_type="text/event-stream", headers=SSE_HEADERS, background=background
    )


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client disconnects (the body must already have been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client leaves first, cancel it and raise ClientDisconnected."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnected
    return task.result()


_END = object()


async def merge(streams: Sequence[AsyncIterator[T]]) -> AsyncGenerator[tuple[int, T]]:
    """Items of several iterators as they come, tagged with the iterator's index. Leaving early
    (or failing) closes every iterator."""
    if len(streams) == 1:
        async with contextlib.aclosing(streams[0]) as only:  # type: ignore[type-var]
            async for item in only:
                yield 0, item
        return
    queue: asyncio.Queue[tuple[int, object]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
        except Exception as exc:
            await queue.put((index, exc))
        else:
            await queue.put((index, _END))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, got = await queue.get()
            if got is _END:
                remaining -= 1
            elif isinstance(got, Exception):
                raise got
            else:
                yield index, cast(T, got)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
