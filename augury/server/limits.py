"""Limits against abuse: request body size (ASGI middleware), per-key rate limits, caps."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from augury.server.errors import APIError


def check_cap(param: str, value: int, cap: int | None, unit: str = "") -> None:
    """400 naming `param` when `value` is above `cap` (None means no cap)."""
    if cap is not None and value > cap:
        what = f"{value} {unit}".strip()
        raise APIError(400, f"{param}: {what} is over this server's limit of {cap}", param=param)


class BodySizeLimitMiddleware:
    """Answers 413 when a request body exceeds `max_bytes`, before any handler parses it.

    A declared Content-Length is checked up front; otherwise (chunked) the body is read, up to
    the limit, and replayed to the app. Later `receive()` calls still pass through, so handlers
    can wait for `http.disconnect`.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = path_limits or {}
        """Paths with their own cap (file uploads)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client left while sending
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        error = APIError(
            413,
            f"request body is larger than this server's limit of {limit} bytes",
            code="request_too_large",
            headers={"Connection": "close"},
        )
        await error.response()(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


@dataclass
class _Bucket:
    requests: float
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets per API key: `requests_per_minute` and `tokens_per_minute`, refilled
    continuously. Tokens are charged after a request (its real usage), so a key may overdraw
    once and then waits until the bucket is positive again."""

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def acquire(self, key: str) -> None:
        """Take one request from `key`'s budget or raise a 429 with Retry-After."""
        if not self.enabled:
            return
        with self._lock:
            bucket = self._refilled(key)
            if self.tpm is not None and bucket.tokens < 1:
                self._refuse("tokens", (1 - bucket.tokens) / self.tpm * 60)
            if self.rpm is not None:
                if bucket.requests < 1:
                    self._refuse("requests", (1 - bucket.requests) / self.rpm * 60)
                bucket.requests -= 1

    def charge(self, key: str, tokens: int) -> None:
        """Subtract a finished request's prompt + generated tokens from `key`'s budget."""
        if self.tpm is None or tokens <= 0:
            return
        with self._lock:
            self._refilled(key).tokens -= tokens

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.rpm or 0), float(self.tpm or 0), now)
            self._buckets[key] = bucket
        elapsed_min = (now - bucket.stamp) / 60
        bucket.stamp = now
        if self.rpm is not None:
            bucket.requests = min(float(self.rpm), bucket.requests + elapsed_min * self.rpm)
        if self.tpm is not None:
            bucket.tokens = min(float(self.tpm), bucket.tokens + elapsed_min * self.tpm)
        return bucket

    def _refuse(self, what: str, wait_s: float) -> None:
        limit = self.rpm if what == "requests" else self.tpm
        raise APIError(
            429,
            f"rate limit of {limit} {what} per minute reached for this API key; "
            f"retry in {math.ceil(wait_s)} s",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )
