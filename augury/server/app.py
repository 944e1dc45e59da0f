"""The app factory: one FastAPI app with its state, middlewares, routes and lifespan.

Middlewares, outermost first: request context (id, access log, counts, last-resort 500) ->
CORS (only when origins are configured) -> API keys -> body size limit -> routes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

import augury
from augury.server.auth import ApiKeys, AuthMiddleware
from augury.server.config import ServerConfig
from augury.server.context import RequestContextMiddleware
from augury.server.engine_client import EngineClient, load_local_engine
from augury.server.errors import install_exception_handlers
from augury.server.limits import BodySizeLimitMiddleware, RateLimiter
from augury.server.metrics import ServerMetrics
from augury.server.openai.routes import router as openai_router
from augury.server.operations import router as operations_router
from augury.server.state import ServerState

log = logging.getLogger(__name__)


def create_app(
    config: ServerConfig | None = None, engines: Sequence[EngineClient] | None = None
) -> FastAPI:
    """An app serving `engines`, or, when None, the model of `config.engine`, loaded in the
    background at startup (the app answers 503 until it is ready). Engines passed in are the
    caller's to shut down."""
    config = config or ServerConfig()
    state = ServerState(
        config=config,
        metrics=ServerMetrics(lambda: state.engines),
        limiter=RateLimiter(
            config.rate_limits.requests_per_minute, config.rate_limits.tokens_per_minute
        ),
    )
    if engines is not None:
        state.engines = {engine.model_id: engine for engine in engines}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load(state)) if engines is None else None
        try:
            yield
        finally:
            state.draining = True
            if loader is not None:
                await loader  # a thread cannot be cancelled; let the load end, then stop it
                for engine in state.engines.values():
                    await engine.shutdown()

    app = FastAPI(
        title="Augury",
        version=augury.__version__,
        description="OpenAI-compatible inference server",
        lifespan=lifespan,
    )
    app.state.augury = state
    install_exception_handlers(app)
    app.include_router(operations_router)
    app.include_router(openai_router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.limits.max_body_bytes)
    app.add_middleware(AuthMiddleware, keys=ApiKeys(config.api_keys))
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics)
    return app


def server_state(app: FastAPI) -> ServerState:
    """The state of an app made by `create_app` (for the CLI and tests)."""
    state: ServerState = app.state.augury
    return state


async def _load(state: ServerState) -> None:
    state.loading = True
    try:
        engine = await asyncio.to_thread(load_local_engine, state.config.engine)
    except Exception as exc:
        log.exception("model failed to load")
        state.load_error = str(exc) or type(exc).__name__
    else:
        state.engines[engine.model_id] = engine
        log.info("model %s ready", engine.model_id)
    finally:
        state.loading = False
