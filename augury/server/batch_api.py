"""The OpenAI Batch API: /v1/files and /v1/batches, run by the batch job runner.

A batch goes validating -> in_progress -> finalizing -> completed (or failed, or cancelling ->
cancelled). Its rows run through the same LLMTask as `augury batch run`, at a lower engine
priority than interactive requests and with at most `max_in_flight` rows in the engine, so
interactive traffic always finds room. Jobs and files live in a SQLite store plus a files
folder; `BatchService.start()` resumes unfinished batches from their checkpoints.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field
from starlette.responses import FileResponse

from augury.batch.checkpoint import Counts
from augury.batch.store import UNFINISHED, BatchStore
from augury.server.engine_client import EngineClient
from augury.server.errors import APIError
from augury.server.openai.routes import ERROR_RESPONSES
from augury.server.state import ServerState
from augury.tasks import cancel_and_wait

if TYPE_CHECKING:  # the job machinery (and pyarrow, ~50 MB) loads with the first batch run
    from augury.batch.job import Job, JobSummary
    from augury.batch.llm_task import Generated

log = logging.getLogger(__name__)

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")


class CreateBatchRequest(BaseModel):
    input_file_id: str
    endpoint: Literal["/v1/chat/completions", "/v1/completions"]
    completion_window: Literal["24h"] = "24h"
    metadata: dict[str, str] | None = None


def _not_found(kind: str, item_id: str) -> APIError:
    return APIError(404, f"no {kind} with id {item_id!r}", param="id", code="not_found")


def _request_id() -> str:
    return f"batch_req_{uuid.uuid4().hex[:24]}"


def output_line(engine: EngineClient, gen: Generated) -> dict[str, Any]:
    """One line of a batch's output file (custom_id is added by the job runner)."""
    from augury.batch.llm_task import response_body

    body = response_body(engine, gen)
    response = {"status_code": 200, "request_id": body["id"], "body": body}
    return {"id": _request_id(), "response": response, "error": None}


def error_line(custom_id: Any, row: int, reason: str) -> dict[str, Any]:
    """One line of a batch's error file: the error envelope the endpoint would have answered."""
    error = APIError(400, reason)
    response = {"status_code": 400, "request_id": _request_id(), "body": error.body()}
    return {"id": _request_id(), "custom_id": custom_id, "response": response, "error": None}


class _CountsProgress:
    """Mirrors a job's counts into the batch's request_counts."""

    def __init__(self, store: BatchStore, batch_id: str, total: int) -> None:
        self.store, self.batch_id, self.total = store, batch_id, total

    def start(self, total: int | None, counts: Counts) -> None:
        self.update(counts)

    def update(self, counts: Counts) -> None:
        self.store.update_batch(
            self.batch_id,
            request_counts={"total": self.total, "completed": counts.ok, "failed": counts.errors},
        )

    def finish(self, summary: JobSummary) -> None:
        self.update(summary.counts)


class BatchService:
    """Runs batches one at a time in the background of a server."""

    def __init__(self, state: ServerState, root: str | Path, max_in_flight: int = 32) -> None:
        self.state = state
        self.store = BatchStore(root)
        self.max_in_flight = max_in_flight
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._jobs: dict[str, Job] = {}

    async def start(self) -> None:
        """Start the worker and queue every unfinished batch (resumed from its checkpoint)."""
        if self._worker is not None:
            return
        self._queue = asyncio.Queue()
        for batch in reversed(self.store.list_batches()):
            if batch["status"] in UNFINISHED:
                self._queue.put_nowait(batch["id"])
        self._worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        """Stop the worker; a running batch keeps its checkpoint and resumes on next start."""
        await cancel_and_wait(self._worker)
        self._worker = None

    # -- API operations ------------------------------------------------------------------------

    async def create(self, req: CreateBatchRequest) -> dict[str, Any]:
        file = self.store.get_file(req.input_file_id)
        if file is None or file["purpose"] != "batch":
            raise APIError(
                400, f"input_file_id {req.input_file_id!r} is not a file with purpose 'batch'",
                param="input_file_id",
            )  # fmt: skip
        now = int(time.time())
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        body: dict[str, Any] = {
            "id": batch_id,
            "object": "batch", "endpoint": req.endpoint,
            "errors": None, "input_file_id": req.input_file_id,
            "completion_window": req.completion_window, "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 24 * 3600, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
            "cancelled_at": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": req.metadata,
        }  # fmt: skip
        self.store.add_batch(body)
        await self.start()
        self._queue.put_nowait(batch_id)
        return body

    def get(self, batch_id: str) -> dict[str, Any]:
        batch = self.store.get_batch(batch_id)
        if batch is None:
            raise _not_found("batch", batch_id)
        return batch

    def cancel(self, batch_id: str) -> dict[str, Any]:
        batch = self.get(batch_id)
        if batch["status"] not in ("validating", "in_progress"):
            raise APIError(
                400, f"batch {batch_id} is {batch['status']} and cannot be cancelled", code="bad"
            )
        job = self._jobs.get(batch_id)
        if job is not None:
            job.cancel()
            return self.store.update_batch(
                batch_id, status="cancelling", cancelling_at=int(time.time())
            )
        now = int(time.time())
        return self.store.update_batch(
            batch_id, status="cancelled", cancelling_at=now, cancelled_at=now
        )

    # -- the worker ----------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            batch_id = await self._queue.get()
            try:
                await self._run(batch_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("batch %s failed", batch_id)
                self._fail(batch_id, "server_error", f"the batch failed: {exc}")

    def _fail(self, batch_id: str, code: str, message: str, line: int | None = None) -> None:
        errors = {"object": "list", "data": [
            {"code": code, "message": message, "param": None, "line": line}
        ]}  # fmt: skip
        self.store.update_batch(batch_id, status="failed", failed_at=int(time.time()),
                                errors=errors)  # fmt: skip

    async def _engine(self, model: str) -> EngineClient:
        while not self.state.engines and self.state.load_error is None:
            await asyncio.sleep(0.5)  # the model is still loading
        return self.state.engine(model)

    async def _run(self, batch_id: str) -> None:
        from augury.batch.job import Job, JobSpec
        from augury.batch.llm_task import LLMTask
        from augury.batch.writers import JsonlSink

        batch = self.get(batch_id)
        if batch["status"] == "cancelling":
            now = int(time.time())
            self.store.update_batch(batch_id, status="cancelled", cancelled_at=now)
            return
        if batch["status"] not in UNFINISHED:
            return
        source = self.store.file_path(batch["input_file_id"])
        try:
            total, model = await asyncio.to_thread(validate_input, source, batch["endpoint"])
        except InputFileError as exc:
            self._fail(batch_id, "invalid_request", str(exc), line=exc.line)
            return
        try:
            engine = await self._engine(model)
        except APIError as exc:
            self._fail(batch_id, "model_not_found", exc.message)
            return
        if self.get(batch_id)["status"] == "cancelled":
            return
        started = batch["in_progress_at"] or int(time.time())
        self.store.update_batch(batch_id, status="in_progress", in_progress_at=started)
        folder = self.store.job_dir(batch_id)
        spec = JobSpec(
            input=source, input_format="jsonl", checkpoint=folder / "checkpoint.json",
            fingerprint={"batch": batch_id}, id_column="custom_id", id_field="custom_id",
            chunk_rows=self.max_in_flight, chunks_in_flight=2, format_error=error_line,
        )  # fmt: skip
        task = LLMTask(engine, self.state, max_in_flight=self.max_in_flight, strict_model=True,
                       format_row=output_line)  # fmt: skip
        job = Job(
            spec, task, JsonlSink(folder / "output.jsonl"), JsonlSink(folder / "errors.jsonl")
        )
        self._jobs[batch_id] = job
        try:
            summary = await job.run(_CountsProgress(self.store, batch_id, total))
        finally:
            self._jobs.pop(batch_id, None)
        self._finalize(batch_id, folder, summary)

    def _finalize(self, batch_id: str, folder: Path, summary: JobSummary) -> None:
        now = int(time.time())
        self.store.update_batch(batch_id, finalizing_at=now)
        fields: dict[str, Any] = {}
        for name, key in (("output.jsonl", "output_file_id"), ("errors.jsonl", "error_file_id")):
            path = folder / name
            if path.exists() and path.stat().st_size > 0:
                file_id = f"file-{uuid.uuid4().hex[:24]}"
                path.rename(self.store.file_path(file_id))
                size = self.store.file_path(file_id).stat().st_size
                self.store.register_file(file_id, "batch_output", f"{batch_id}_{name}", size)
                fields[key] = file_id
        if summary.cancelled:
            fields.update(status="cancelled", cancelled_at=now)
        else:
            fields.update(status="completed", completed_at=now)
        self.store.update_batch(batch_id, **fields)


class InputFileError(ValueError):
    """A batch input file line that is not a request (the batch fails, naming the line)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line


def validate_input(path: Path, endpoint: str) -> tuple[int, str]:
    """(requests, model of the first request) of an input file; InputFileError otherwise."""
    total, model = 0, None
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise InputFileError(number, f"line {number} is not valid JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get("custom_id"), str):
                raise InputFileError(number, f"line {number} has no string 'custom_id'")
            if row.get("method") != "POST" or row.get("url") != endpoint:
                raise InputFileError(
                    number, f"line {number}: method must be POST and url {endpoint!r}"
                )
            if not isinstance(row.get("body"), dict):
                raise InputFileError(number, f"line {number} has no object 'body'")
            model = model or row["body"].get("model")
            total += 1
    if total == 0 or not isinstance(model, str):
        raise InputFileError(
            None, "the input file has no requests (or its first request names no model)"
        )
    return total, model


def batch_router(service: BatchService) -> APIRouter:
    """The /v1/files and /v1/batches routes over `service`."""
    router = APIRouter(prefix="/v1", tags=["batch"], responses=ERROR_RESPONSES)

    @router.post("/files")
    async def upload_file(
        file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]
    ) -> dict[str, Any]:
        """Upload a JSONL file of requests (purpose=batch)."""
        if purpose != "batch":
            raise APIError(400, f"purpose: only 'batch' is supported, got {purpose!r}", "purpose")

        def chunks() -> Any:
            while block := file.file.read(1 << 20):
                yield block

        return await asyncio.to_thread(
            service.store.add_file, purpose, file.filename or "upload.jsonl", chunks()
        )

    @router.get("/files")
    async def list_files(purpose: str | None = None) -> dict[str, Any]:
        data = service.store.list_files(purpose)
        return {"object": "list", "data": data, "has_more": False}

    @router.get("/files/{file_id}")
    async def get_file(file_id: str) -> dict[str, Any]:
        found = service.store.get_file(file_id)
        if found is None:
            raise _not_found("file", file_id)
        return found

    @router.get("/files/{file_id}/content")
    async def file_content(file_id: str) -> FileResponse:
        if service.store.get_file(file_id) is None:
            raise _not_found("file", file_id)
        path = service.store.file_path(file_id)
        return FileResponse(path, media_type="application/octet-stream")

    @router.delete("/files/{file_id}")
    async def delete_file(file_id: str) -> dict[str, Any]:
        if not service.store.delete_file(file_id):
            raise _not_found("file", file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    @router.post("/batches")
    async def create_batch(body: CreateBatchRequest) -> dict[str, Any]:
        return await service.create(body)

    @router.get("/batches/{batch_id}")
    async def get_batch(batch_id: str) -> dict[str, Any]:
        return service.get(batch_id)

    @router.post("/batches/{batch_id}/cancel")
    async def cancel_batch(batch_id: str) -> dict[str, Any]:
        return service.cancel(batch_id)

    @router.get("/batches")
    async def list_batches(
        after: str | None = None, limit: Annotated[int, Field(ge=1, le=100)] = 20
    ) -> dict[str, Any]:
        batches = service.store.list_batches()
        if after is not None:
            ids = [b["id"] for b in batches]
            batches = batches[ids.index(after) + 1 :] if after in ids else []
        page = batches[:limit]
        return {
            "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(batches) > limit,
        }  # fmt: skip

    return router
