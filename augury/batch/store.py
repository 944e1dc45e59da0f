"""The OpenAI Batch API's state: files and batches in an embedded SQLite database, file bytes
in a folder. Everything survives a restart; unfinished batches are resumed from their job
checkpoints (see augury/server/batch_api.py)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

UNFINISHED = ("validating", "in_progress", "finalizing", "cancelling")
"""Batch states a restarted server picks up again."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, purpose TEXT NOT NULL, filename TEXT NOT NULL,
    bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, body TEXT NOT NULL
);
"""


class BatchStore:
    """Files under `root/files/`, job folders under `root/jobs/`, rows in `root/batch.db`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.files_dir = self.root / "files"
        self.jobs_dir = self.root / "jobs"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "batch.db", check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _seq(self, table: str) -> int:
        row = self._db.execute(f"SELECT COALESCE(MAX(seq), 0) + 1 FROM {table}").fetchone()
        return int(row[0])

    # -- files ---------------------------------------------------------------------------------

    def file_path(self, file_id: str) -> Path:
        return self.files_dir / file_id

    def add_file(self, purpose: str, filename: str, chunks: Iterable[bytes]) -> dict[str, Any]:
        """Store a file's bytes (written to a temporary name, then renamed) and its record."""
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        tmp = self.files_dir / f".{file_id}.tmp"
        size = 0
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
        tmp.rename(self.file_path(file_id))
        return self.register_file(file_id, purpose, filename, size)

    def register_file(self, file_id: str, purpose: str, filename: str, size: int) -> dict[str, Any]:
        """Record a file already in place under `file_path(file_id)`."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
                (file_id, purpose, filename, size, int(time.time()), self._seq("files")),
            )
        found = self.get_file(file_id)
        assert found is not None
        return found

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return _file_object(row) if row else None

    def list_files(self, purpose: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM files ORDER BY seq DESC").fetchall()
        return [_file_object(r) for r in rows if purpose is None or r[1] == purpose]

    def delete_file(self, file_id: str) -> bool:
        with self._lock, self._db:
            gone = self._db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount
        self.file_path(file_id).unlink(missing_ok=True)
        return bool(gone)

    # -- batches -------------------------------------------------------------------------------

    def add_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO batches VALUES (?, ?, ?)",
                (body["id"], self._seq("batches"), json.dumps(body)),
            )
        return body

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def update_batch(self, batch_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a batch atomically; returns the new body."""
        with self._lock, self._db:
            row = self._db.execute("SELECT body FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                raise KeyError(batch_id)
            body = {**json.loads(row[0]), **fields}
            self._db.execute(
                "UPDATE batches SET body = ? WHERE id = ?", (json.dumps(body), batch_id)
            )
        return body

    def list_batches(self) -> list[dict[str, Any]]:
        """Newest first."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM batches ORDER BY seq DESC").fetchall()
        return [json.loads(r[0]) for r in rows]

    def job_dir(self, batch_id: str) -> Path:
        folder = self.jobs_dir / batch_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def _file_object(row: tuple[Any, ...]) -> dict[str, Any]:
    file_id, purpose, filename, size, created, _ = row
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": created,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }
