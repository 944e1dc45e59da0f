"""The checkpoint of a job: how far it got, committed atomically after each chunk.

A commit is: the sinks flush and fsync what they wrote, then the checkpoint file is replaced
(write a temporary file, fsync, rename, fsync the folder). After a crash at any moment the
checkpoint names a state every sink can roll back to (truncate a file, delete later parts or
rows), and the input is read again from the row after the last committed one, so every input
row lands in the output exactly once.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CHECKPOINT_VERSION = 1


@dataclass
class Counts:
    """Running totals of a job, saved in each checkpoint."""

    rows_done: int = 0
    """Input rows consumed and committed (a prefix of the input, blank lines included)."""
    ok: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Checkpoint:
    fingerprint: dict[str, Any]
    """What identifies the job (input file, model, formats); a mismatch refuses to resume."""
    counts: Counts = field(default_factory=Counts)
    input_offset: int | None = None
    """Byte offset after the last committed row (JSONL inputs), for a fast restart."""
    sink: dict[str, Any] = field(default_factory=dict)
    errors_sink: dict[str, Any] = field(default_factory=dict)
    done: bool = False

    def to_json(self) -> str:
        return json.dumps({"version": CHECKPOINT_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        raw = json.loads(text)
        if raw.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {raw.get('version')!r} is not supported")
        return cls(
            fingerprint=raw["fingerprint"],
            counts=Counts(**raw["counts"]),
            input_offset=raw.get("input_offset"),
            sink=raw.get("sink") or {},
            errors_sink=raw.get("errors_sink") or {},
            done=bool(raw.get("done")),
        )


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at `path`, or None when there is none yet."""
    try:
        return Checkpoint.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"checkpoint {path} is unreadable ({exc}); delete it (or pass --restart) to start over"
        ) from None


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint atomically and durably."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(checkpoint.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
