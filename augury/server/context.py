"""The outermost middleware: request ids, JSON access logs, request counts, and a last-resort
500 envelope that never shows a traceback."""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from augury.server.errors import APIError
from augury.server.logging import ACCESS_LOGGER
from augury.server.metrics import ServerMetrics

log = logging.getLogger(__name__)
access_log = logging.getLogger(ACCESS_LOGGER)

REQUEST_ID_HEADER = "x-request-id"
_ID_KEY = REQUEST_ID_HEADER.encode()
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
        self._counters: dict[tuple[str, str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        header = next((v for k, v in scope.get("headers") or () if k == _ID_KEY), b"")
        given = header.decode("latin-1")  # checked against _VALID_ID below
        request_id = given if _VALID_ID.fullmatch(given) else os.urandom(16).hex()
        state["request_id"] = request_id
        start = time.monotonic()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((_ID_KEY, request_id.encode()))
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
        labels = (path, str(status or 499), key)
        counter = self._counters.get(labels)
        if counter is None:  # a few dozen label sets: routes x statuses x key names
            counter = self._counters[labels] = self.metrics.requests.labels(*labels)
        counter.inc()
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
