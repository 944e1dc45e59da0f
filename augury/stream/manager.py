"""All streaming sessions of a server: open, resume, detach, close, under per-key limits.

A session is live while a client is attached (or being detached). On disconnect it is
detached: its queued events are run, its state becomes a checkpoint, and the live object goes
away; `resume` with the session id and token rebuilds it from the checkpoint within
`resume_timeout_s`. `close` (the client's "close" frame) ends it for good.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from augury.stream.checkpoint import Checkpoint, CheckpointStore, token_digest, token_matches
from augury.stream.config import StreamConfig
from augury.stream.protocol import FrameError, OpenFrame, ResumeFrame
from augury.stream.registry import ModelNotFound, ModelOptions, ModelRegistry
from augury.stream.scheduler import Scheduler
from augury.stream.session import Session, SessionCore, SessionSpec

RESUME_WAIT_S = 3.0
"""How long a resume waits for the server to notice that the old connection is gone."""


class StreamManager:
    """See the module docstring."""

    def __init__(self, config: StreamConfig, registry: ModelRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or ModelRegistry(config.models_dir)
        self.store = CheckpointStore(config.resume_timeout_s, config.checkpoint_dir)
        self.live: dict[str, Session] = {}
        self.scheduler = Scheduler()
        self._tokens: dict[str, str] = {}  # session id -> token digest, for live sessions

    def count(self, key_name: str | None = None) -> int:
        """Live plus resumable sessions (of one key, or all)."""
        self.store.expire()
        if key_name is None:
            return len(self.live) + len(self.store)
        live = sum(1 for s in self.live.values() if s.key_name == key_name)
        return live + self.store.count(key_name)

    def spec_of(self, frame: OpenFrame) -> SessionSpec:
        """The session spec of an open frame; ValueError if bad. A frame without a window
        gets the model's default window, else the server's."""
        kind, size, stride = self.registry.default_window(frame.model) or self.config.default_window
        if frame.window is not None:
            kind, size, stride = frame.window.kind, frame.window.size, frame.window.stride
        o = frame.options
        return SessionSpec(
            model=frame.model,
            channels=tuple(frame.channels),
            window_kind=kind,
            window_size=float(size),
            window_stride=float(stride),
            late_policy=o.late_policy,
            reorder_bound=o.reorder_bound,
            queue_size=o.queue_size,
            overflow=o.overflow,
            features=tuple(o.features),
            n_bands=o.n_bands,
            include_ids=o.include_ids,
            model_options=o.model.model_dump(),
        )

    def _build(self, spec: SessionSpec) -> SessionCore:
        options = dict(spec.model_options)
        if options.get("classes") is not None:
            options["classes"] = tuple(options["classes"])
        model = self.registry.create(spec.model, spec.n_features, ModelOptions(**options))
        return SessionCore(spec, model, self.config.result_buffer)

    def _check_limits(self, key_name: str) -> None:
        if self.count() >= self.config.max_sessions:
            raise FrameError(
                "too_many_sessions",
                f"the server holds its limit of {self.config.max_sessions} sessions; "
                "close idle ones or retry later",
            )
        if self.count(key_name) >= self.config.max_sessions_per_key:
            raise FrameError(
                "too_many_sessions",
                f"this API key holds its limit of {self.config.max_sessions_per_key} sessions "
                "(open and resumable); send 'close' on sessions you are done with",
            )

    def open(self, frame: OpenFrame, key_name: str) -> tuple[Session, str]:
        """A new session and its resume token; FrameError for limits or a bad spec."""
        self._check_limits(key_name)
        try:
            core = self._build(self.spec_of(frame))
        except ValueError as exc:
            code = "model_not_found" if isinstance(exc, ModelNotFound) else "invalid_open"
            raise FrameError(code, str(exc)) from exc
        session_id, token = secrets.token_hex(12), secrets.token_urlsafe(24)
        session = Session(
            session_id, key_name, core, self.config.worker_batch, self.scheduler.notify
        )
        self.live[session_id] = session
        self._tokens[session_id] = token_digest(token)
        return session, token

    async def resume(self, frame: ResumeFrame, key_name: str) -> Session:
        """The session of a resume frame, rebuilt from its checkpoint; FrameError if the id,
        token or key do not match or it expired."""
        unknown = FrameError(
            "unknown_session",
            f"no resumable session {frame.session_id!r} for this key with that token (wrong "
            f"token, expired after {self.config.resume_timeout_s:g} s, or closed); open a new one",
        )
        deadline = time.monotonic() + RESUME_WAIT_S
        while frame.session_id in self.live:  # the old connection is still being detached
            session = self.live[frame.session_id]
            digest = self._tokens.get(frame.session_id, "")
            if session.key_name != key_name or not token_matches(frame.resume_token, digest):
                raise unknown
            if time.monotonic() > deadline:
                raise FrameError(
                    "session_attached",
                    "the session is still attached to another connection; close it first",
                )
            await asyncio.sleep(0.02)
        checkpoint = self.store.get(frame.session_id)
        if (
            checkpoint is None
            or checkpoint.key_name != key_name
            or not token_matches(frame.resume_token, checkpoint.token_digest)
        ):
            raise unknown
        core = self._build(SessionSpec.from_json(checkpoint.spec))
        core.load(checkpoint.core)
        self.store.remove(frame.session_id)
        session = Session(
            checkpoint.session_id,
            key_name,
            core,
            self.config.worker_batch,
            self.scheduler.notify,
        )
        self.live[session.id] = session
        self._tokens[session.id] = checkpoint.token_digest
        return session

    async def detach(self, session: Session) -> None:
        """The client is gone: checkpoint the session for a later resume."""
        await session.detach()
        checkpoint = Checkpoint(
            session_id=session.id,
            key_name=session.key_name,
            token_digest=self._tokens.pop(session.id, ""),
            spec=session.core.spec.to_json(),
            core=session.core.state(),
            saved_at=time.time(),
        )
        self.store.save(checkpoint)
        self.live.pop(session.id, None)

    async def close(self, session: Session) -> None:
        """End a session for good (nothing to resume)."""
        await session.detach()
        self._tokens.pop(session.id, None)
        self.live.pop(session.id, None)
        self.store.remove(session.id)

    async def shutdown(self) -> None:
        """Checkpoint every live session (server shutdown)."""
        for session in list(self.live.values()):
            await self.detach(session)
        await self.scheduler.stop()
