"""The dashboard's JSON routes, and the middleware that serves the static page.

`/api/stats` feeds the charts; `/api/jobs` lists the Batch API's batches with their progress
and `/api/streams` the streaming sessions with their rates (see activity.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from augury.server.errors import APIError
from augury.server.state import ServerState, get_state
from augury.server.web.activity import StreamActivity, job_items
from augury.server.web.protocol import JobList, ModelStats, StatsResponse, StreamList

if TYPE_CHECKING:
    from augury.server.batch_api import BatchService
    from augury.server.streams import StreamRouter

STATIC_DIR = Path(__file__).parent / "static"
"""index.html and its ES modules, styles and icons (shipped as package data)."""
ASSET_PREFIX = "/web/"

router = APIRouter(prefix="/api", tags=["dashboard"])

State = Annotated[ServerState, Depends(get_state)]


@router.get("/stats")
async def stats(state: State) -> StatsResponse:
    """Each generation model's engine figures, token and request rates, and TTFT, inter-token
    and end-to-end latency percentiles over the recent window (what the dashboard plots)."""
    recent = state.metrics.recent
    engines = {model: engine.stats() for model, engine in state.engines.items()}
    return StatsResponse(
        time=time.time(),
        uptime_s=max(0.0, time.time() - state.created),
        window_s=recent.window_s,
        rate_window_s=recent.rate_window_s,
        ready=state.ready,
        models=[ModelStats.of(a) for a in recent.snapshot(engines)],
    )


def get_activity(request: Request) -> StreamActivity:
    """This app's session-rate sampler (made on first use, kept in app.state)."""
    state = request.app.state
    activity = getattr(state, "web_stream_activity", None)
    if not isinstance(activity, StreamActivity):
        activity = state.web_stream_activity = StreamActivity()
    return activity


@router.get("/jobs")
async def jobs(request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JobList:
    """The newest `limit` batch jobs with their progress and rows per second."""
    service: BatchService | None = getattr(request.app.state, "batches", None)
    if service is None:
        return JobList(enabled=False, total=0, data=[])
    batches = await asyncio.to_thread(service.store.list_batches)  # SQLite: off the loop
    return JobList(enabled=True, total=len(batches), data=job_items(batches, limit))


@router.get("/streams")
async def streams(
    request: Request,
    activity: Annotated[StreamActivity, Depends(get_activity)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> StreamList:
    """Up to `limit` streaming sessions (live first, then resumable) with their counters and
    rates, and how many the server holds in all."""
    router_: StreamRouter | None = getattr(request.app.state, "streams", None)
    if router_ is None:
        return StreamList(total=0, data=[])
    manager = router_.manager
    return StreamList(total=manager.count(), data=activity.items(manager, limit))


_SECURITY_HEADERS = [
    # Only this origin: the page works offline and can never pull a script from elsewhere.
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class WebPageMiddleware:
    """Serves `GET /` (index.html) and `GET /web/*` (its assets) from `directory`, ahead of
    the API-key check: the page holds no secret, and a browser cannot attach a key to a page
    load. The page asks for a key and sends it with every API call, which stay behind auth."""

    def __init__(self, app: ASGIApp, directory: Path = STATIC_DIR) -> None:
        self.app = app
        self.files = StaticFiles(directory=directory)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope.get("method") not in ("GET", "HEAD") or not (
            path == "/" or path.startswith(ASSET_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        asset = "/index.html" if path == "/" else path[len(ASSET_PREFIX) - 1 :]

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *_SECURITY_HEADERS]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.files({**scope, "path": asset, "root_path": ""}, receive, send_secured)
        except HTTPException as exc:  # outside the app's handlers: answer the envelope here
            error = APIError(exc.status_code, f"no such page asset: {path}")
            await error.response()(scope, receive, send)
