"""API keys, checked in one place for every route (but /health) by an ASGI middleware."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from augury.server.errors import APIError

ANONYMOUS = "anonymous"
"""The key name of requests when auth is off (rate limits then apply to all together)."""

PUBLIC_PATHS = frozenset({"/health", "/ready"})
"""Routes that never need a key: liveness and readiness probes (Kubernetes) carry no secrets,
and these answer only up/ready."""


class ApiKeys:
    """The accepted keys. Lookups compare digests in constant time against every key, so the
    answer's timing tells nothing about how much of a guess was right."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._digests = [(name, _digest(key)) for name, key in keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, key: str) -> str | None:
        """The name of `key`, or None if it is not one of ours."""
        candidate = _digest(key)
        found = None
        for name, digest in self._digests:  # no early exit: same work for every key
            if hmac.compare_digest(candidate, digest):
                found = name
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def bearer_token(scope: Scope) -> str | None:
    """The key of an `Authorization: Bearer KEY` header (also accepts `x-api-key: KEY`)."""
    headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return api_key or None


class AuthMiddleware:
    """Rejects requests without a valid key with 401 and records the key's name in
    `scope["state"]["api_key"]` for rate limits, metrics and logs."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.keys.enabled:
            state["api_key"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        name = self.keys.identify(token) if token else None
        if name is None and scope.get("path") not in PUBLIC_PATHS:
            message = (
                "missing API key: send 'Authorization: Bearer YOUR_KEY'"
                if token is None
                else "incorrect API key provided"
            )
            error = APIError(
                401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
            )
            await error.response()(scope, receive, send)
            return
        state["api_key"] = name or ANONYMOUS
        await self.app(scope, receive, send)
