"""Operational routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from augury.server.state import ServerState, get_state

router = APIRouter(tags=["operations"])

State = Annotated[ServerState, Depends(get_state)]


@router.get("/health")
async def health() -> dict[str, str]:
    """200 while the process is alive (no key needed)."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "loading, failed or draining"}})
async def ready(state: State) -> dict[str, object]:
    """200 once the models are loaded, 503 while loading or draining."""
    state.check_available()
    return {"status": "ready", "models": sorted(state.engines)}


@router.get("/metrics", response_class=Response)
async def metrics(state: State) -> Response:
    """Prometheus text format, from this app's own registry."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
