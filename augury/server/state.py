"""What handlers share: the engines, limits, metrics and the server's lifecycle."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Request

from augury.server.config import ServerConfig
from augury.server.engine_client import EngineClient
from augury.server.errors import APIError
from augury.server.limits import RateLimiter
from augury.server.metrics import ServerMetrics


@dataclass
class ServerState:
    config: ServerConfig
    metrics: ServerMetrics
    limiter: RateLimiter
    engines: dict[str, EngineClient] = field(default_factory=dict)
    """model id -> engine; empty while loading."""
    created: int = field(default_factory=lambda: int(time.time()))
    loading: bool = False
    load_error: str | None = None
    draining: bool = False
    """Set on SIGTERM: new work is refused while in-flight requests finish."""

    @property
    def ready(self) -> bool:
        return bool(self.engines) and not self.draining

    def check_available(self) -> None:
        """503 (with Retry-After) while the model loads, after a failed load, or while draining."""
        if self.draining:
            raise APIError(503, "the server is shutting down", headers={"Retry-After": "5"})
        if not self.engines:
            why = f"model failed to load: {self.load_error}" if self.load_error else None
            raise APIError(
                503,
                why or "the model is still loading; retry shortly",
                code="model_loading" if why is None else "model_unavailable",
                headers={"Retry-After": "5"},
            )

    def engine(self, model: str) -> EngineClient:
        """The engine serving `model`, or 404."""
        self.check_available()
        engine = self.engines.get(model)
        if engine is None:
            known = ", ".join(sorted(self.engines))
            raise APIError(
                404,
                f"model {model!r} does not exist; this server has: {known}",
                param="model",
                code="model_not_found",
            )
        return engine


def get_state(request: Request) -> ServerState:
    """FastAPI dependency: the app's state."""
    state: ServerState = request.app.state.augury
    return state
