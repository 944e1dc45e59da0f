"""The outermost middleware: request ids, JSON access logs, request counts, and a last-resort
500 envelope that never shows a traceback."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from augury.server.errors import APIError
from augury.server.logging import ACCESS_LOGGER
from augury.server.metrics import ServerMetrics

log = logging.getLogger(__name__)
access_log = logging.getLogger(ACCESS_LOGGER)

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The id of the request in `scope` (set by RequestContextMiddleware)."""
    return str(scope.get("state", {}).get("request_id", "-"))


class RequestContextMiddleware:
    """Gives each request an id (a client's `X-Request-Id` when well-formed), echoes it, logs
    one JSON line per request, counts requests by route/status/key and turns any unexpected
    exception into a 500 envelope (logged with the request id)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"").decode()
        request_id = given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex
        state["request_id"] = request_id
        start = time.monotonic()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if status == 0:  # nothing sent yet: answer with the envelope
                error = APIError(500, f"internal server error (request id {request_id})")
                await error.response()(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.monotonic() - start)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        state = scope.get("state", {})
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        key = str(state.get("api_key", "none"))
        self.metrics.requests.labels(path, str(status or 499), key).inc()
        access_log.info(
            "%s %s %d",
            scope.get("method"),
            scope.get("path"),
            status,
            extra={
                "request_id": state.get("request_id"),
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status or 499,
                "duration_ms": round(seconds * 1e3, 2),
                "api_key": key,
                "client": (scope.get("client") or ("-",))[0],
            },
        )
