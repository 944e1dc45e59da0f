"""Server-side settings of streaming sessions (limits, defaults, where models and checkpoints
live). Per-session choices (window, policies, model options) come with the "open" frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StreamConfig:
    """Everything the stream manager and router need."""

    models_dir: Path | None = None
    """A model repository folder whose ELM models sessions may open (besides the built-ins)."""
    checkpoint_dir: Path | None = None
    """Where detached sessions' checkpoints are also written (they survive a restart);
    None keeps them in memory only."""
    default_window: tuple[str, float, float] = ("count", 64, 32)
    """(kind, size, stride) for sessions that declare no window."""
    max_frame_bytes: int = 1 << 20
    """Largest frame accepted; larger ones get an error frame and are skipped."""
    max_sessions_per_key: int = 256
    """Open plus resumable sessions one API key may hold."""
    max_sessions: int = 4096
    """Open plus resumable sessions in all."""
    idle_timeout_s: float = 300.0
    """A connection that sends nothing for this long is closed (the session stays resumable)."""
    resume_timeout_s: float = 120.0
    """How long a disconnected session's checkpoint waits for its client to resume."""
    result_buffer: int = 1024
    """Results kept per session for replay to a client that resumes."""
    worker_batch: int = 256
    """Events the scheduler takes from a session's queue per step; also the result frames a
    session's outbox may hold before the scheduler waits for its client to read."""

    def __post_init__(self) -> None:
        kind, size, stride = self.default_window
        if kind not in ("count", "time") or not (size > 0 and stride > 0):
            raise ValueError(
                f"default_window must be ('count'|'time', size > 0, stride > 0), "
                f"got {self.default_window}"
            )
        for name in ("max_frame_bytes", "max_sessions_per_key", "max_sessions", "worker_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("idle_timeout_s", "resume_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.result_buffer < 0:
            raise ValueError(f"result_buffer must be >= 0, got {self.result_buffer}")
