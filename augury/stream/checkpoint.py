"""Checkpoints of detached sessions: everything needed to continue where a client left.

A checkpoint is JSON (no pickle): the session spec, the core's state (reorder buffer, window
buffer, model state, counters, highest accepted event id, replay ring), the key it belongs to
and a digest of its resume token. The store keeps them in memory until `resume_timeout_s`
passes and, when given a directory, also on disk so they survive a server restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str, digest: str) -> bool:
    """Constant-time comparison of a presented token with a stored digest."""
    return hmac.compare_digest(token_digest(token), digest)


@dataclass
class Checkpoint:
    session_id: str
    key_name: str
    token_digest: str
    spec: dict[str, Any]
    core: dict[str, Any]
    saved_at: float
    """time.time() when saved; the checkpoint expires resume_timeout_s later."""

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        return cls(**json.loads(text))


class CheckpointStore:
    """Checkpoints by session id, expiring `timeout_s` after they were saved."""

    def __init__(self, timeout_s: float, directory: Path | None = None) -> None:
        self.timeout_s = timeout_s
        self.directory = directory
        self._items: dict[str, Checkpoint] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            for path in directory.glob("*.json"):
                try:
                    checkpoint = Checkpoint.from_json(path.read_text())
                except (ValueError, TypeError, KeyError):
                    continue  # a torn or foreign file: not ours to resume
                self._items[checkpoint.session_id] = checkpoint
        self.expire()

    def __len__(self) -> int:
        return len(self._items)

    def count(self, key_name: str) -> int:
        return sum(1 for c in self._items.values() if c.key_name == key_name)

    def save(self, checkpoint: Checkpoint) -> None:
        self._items[checkpoint.session_id] = checkpoint
        if self.directory is not None:
            path = self.directory / f"{checkpoint.session_id}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(checkpoint.to_json())
            os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one

    def get(self, session_id: str) -> Checkpoint | None:
        self.expire()
        return self._items.get(session_id)

    def remove(self, session_id: str) -> None:
        self._items.pop(session_id, None)
        if self.directory is not None:
            (self.directory / f"{session_id}.json").unlink(missing_ok=True)

    def expire(self, now: float | None = None) -> int:
        """Drop checkpoints older than the timeout; returns how many."""
        now = time.time() if now is None else now
        old = [sid for sid, c in self._items.items() if now - c.saved_at > self.timeout_s]
        for sid in old:
            self.remove(sid)
        return len(old)
