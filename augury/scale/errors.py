"""What a Ray failure means to a client: the replica's own exception, or a short reason."""

from __future__ import annotations

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import RayServeException

REPLICA_FAILURES: tuple[type[Exception], ...] = (RayActorError, RayServeException)
"""Raised by a handle when the replica died, is unreachable, or Serve cannot route."""


def unwrap(exc: RayTaskError) -> BaseException:
    """The replica's own exception (ValueError, QueueFullError, PredictError...) instead of
    Ray's wrapper, whose message carries a remote traceback."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc


def reason(exc: BaseException) -> str:
    """'ActorDiedError: first line of its message' (at most 200 characters)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__
