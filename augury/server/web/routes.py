"""The dashboard's JSON routes, and the middleware that serves the static page.

`/api/jobs` and `/api/streams` answer empty lists until the batch-job and streaming-session
features fill them; the page already shows both sections (with their empty state).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from augury.server.errors import APIError
from augury.server.state import ServerState, get_state
from augury.server.web.protocol import ItemList, ModelStats, StatsResponse

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


@router.get("/jobs")
async def jobs() -> ItemList:
    """Batch jobs with their progress (empty until batch jobs land)."""
    return ItemList(data=[])


@router.get("/streams")
async def streams() -> ItemList:
    """Streaming sessions with their rates (empty until streaming sessions land)."""
    return ItemList(data=[])


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
