"""KServe v2 / Open Inference Protocol REST routes over a ModelRepository.

Every error answers `{"error": "message"}` (the protocol's envelope, not OpenAI's): handlers
return JSONResponse themselves, so the app's exception handlers never reformat them.
Status codes: 400 bad request or failed load, 404 unknown model or version, 429 queue full,
503 model not ready, 504 request timed out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

import augury
from augury.predict.errors import (
    ConfigError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    PredictError,
    QueueFull,
    RequestTimeout,
)
from augury.predict.pipeline import InferRequest
from augury.predict.repository import ModelRepository, ModelVersion
from augury.server.kserve.protocol import (
    InferenceRequest,
    binary_outputs,
    decode_input,
    encode_output,
    split_binary,
)

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[Exception], int]] = [
    (InvalidInput, 400),
    (ConfigError, 400),
    (ModelNotFound, 404),
    (QueueFull, 429),
    (ModelNotReady, 503),
    (RequestTimeout, 504),
]
EXTENSIONS = ["model_repository", "binary_tensor_data"]


def error(status: int, message: str) -> JSONResponse:
    """The protocol's error body."""
    return JSONResponse({"error": message}, status_code=status)


def error_status(exc: Exception) -> tuple[int, str]:
    """The status code and message that answer `exc` (500 for an unexpected one, logged)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status, str(exc)
    log.exception("prediction failed", exc_info=exc)
    return 500, f"internal error: {type(exc).__name__}: {exc}"


def from_exception(exc: Exception) -> JSONResponse:
    return error(*error_status(exc))


def lookup(repository: ModelRepository, name: str, version: str | None) -> ModelVersion:
    """The model version a path names; ModelNotFound for an unknown name or a bad version."""
    number = None
    if version is not None:
        if not version.isdigit():
            raise ModelNotFound(f"model version must be a number, got {version!r}")
        number = int(version)
    return repository.get(name, number)


@dataclass(frozen=True)
class InferAnswer:
    """What POST .../infer answers: the status and body, and, when outputs are in binary,
    the length of the body's JSON header (`Inference-Header-Content-Length`)."""

    status: int
    body: bytes
    header_length: int | None = None

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """content-type and, for a binary answer, the JSON header's length."""
        if self.header_length is None:
            return [(b"content-type", b"application/json")]
        return [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(self.header_length).encode()),
        ]


async def infer_answer(
    repository: ModelRepository,
    name: str,
    version: str | None,
    body: bytes,
    header_length: str | None,
) -> InferAnswer:
    """POST /v2/models/{name}[/versions/{version}]/infer (shared by the route and the ASGI
    fast path, augury.server.kserve.fastpath)."""
    try:
        model = lookup(repository, name, version)
        parsed, tensors = _parse(body, header_length)
        default, chosen = binary_outputs(parsed)
        result = await model.infer(tensors, timeout_s=_timeout(parsed))
    except Exception as exc:
        status, message = error_status(exc)
        return InferAnswer(status, orjson.dumps({"error": message}))
    blobs: list[bytes] = []
    try:
        outputs = [
            encode_output(n, v, result.parameters.get(n), blobs if chosen.get(n, default) else None)
            for n, v in result.outputs.items()
        ]
    except Exception as exc:  # a model output the protocol cannot carry
        log.exception("model %s: could not encode its outputs", model.name)
        message = f"model {model.name!r}: its outputs cannot be encoded: {exc}"
        return InferAnswer(500, orjson.dumps({"error": message}))
    answer: dict[str, Any] = {
        "model_name": model.name,
        "model_version": str(model.version),
        "outputs": outputs,
    }
    if parsed.id is not None:
        answer["id"] = parsed.id
    head = orjson.dumps(answer)
    if not blobs:
        return InferAnswer(200, head)
    return InferAnswer(200, b"".join([head, *blobs]), len(head))


def build_router(repository: ModelRepository) -> APIRouter:
    """The /v2 routes serving `repository` (start it with `repository_lifespan`)."""
    router = APIRouter(tags=["kserve-v2"])

    @router.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "augury", "version": augury.__version__, "extensions": EXTENSIONS}

    @router.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        broken = [e.name for e in repository.index() if e.state != "READY" and e.reason]
        if broken:
            return error(503, f"models failed to load: {', '.join(broken)}")
        return JSONResponse({"ready": True})

    @router.get("/v2/models/{name}")
    @router.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> Response:
        try:
            return JSONResponse(_metadata(lookup(repository, name, version)))
        except PredictError as exc:
            return from_exception(exc)

    @router.get("/v2/models/{name}/config")
    @router.get("/v2/models/{name}/versions/{version}/config")
    async def model_config(name: str, version: str | None = None) -> Response:
        try:
            return JSONResponse(_config(lookup(repository, name, version)))
        except PredictError as exc:
            return from_exception(exc)

    @router.get("/v2/models/{name}/ready")
    @router.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        try:
            lookup(repository, name, version)
        except PredictError as exc:
            return from_exception(exc)
        return JSONResponse({"name": name, "ready": True})

    @router.post("/v2/models/{name}/infer")
    @router.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        header = request.headers.get("inference-header-content-length")
        answer = await infer_answer(repository, name, version, await request.body(), header)
        headers = {k.decode(): v.decode() for k, v in answer.headers}
        return Response(answer.body, answer.status, headers=headers)

    @router.post("/v2/repository/index")
    async def repository_index() -> list[dict[str, Any]]:
        return [
            {"name": e.name, "version": "" if e.version is None else str(e.version),
             "state": e.state, "reason": e.reason}
            for e in repository.index()
        ]  # fmt: skip

    @router.post("/v2/repository/models/{name}/load")
    async def load(name: str) -> Response:
        try:
            await repository.load(name)
        except Exception as exc:
            if isinstance(exc, ModelNotFound):
                return from_exception(exc)
            return error(400, f"failed to load model {name!r}: {exc}")
        return JSONResponse({})

    @router.post("/v2/repository/models/{name}/unload")
    async def unload(name: str) -> Response:
        try:
            await repository.unload(name)
        except PredictError as exc:
            return from_exception(exc)
        return JSONResponse({})

    return router


def repository_lifespan(
    repository: ModelRepository,
) -> Callable[[FastAPI], Any]:
    """A lifespan that starts and stops `repository` (for apps made without create_app)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await repository.start()
        try:
            yield
        finally:
            await repository.stop()

    return lifespan


def _parse(body: bytes, header_length: str | None) -> tuple[InferenceRequest, InferRequest]:
    """The request header and its tensors as numpy arrays (InvalidInput when malformed)."""
    size = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidInput(f"Inference-Header-Content-Length {header_length!r} is invalid")
        size = int(header_length)
    try:
        parsed = InferenceRequest.model_validate(_loads(body[:size]))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InvalidInput(f"invalid inference request at '{where}': {first['msg']}") from None
    binary = split_binary(parsed, body, size) if header_length else [None] * len(parsed.inputs)
    inputs = {}
    for tensor, part in zip(parsed.inputs, binary, strict=True):
        if tensor.name in inputs:
            raise InvalidInput(f"input {tensor.name!r} is given twice")
        inputs[tensor.name] = decode_input(tensor, part)
    outputs = tuple(o.name for o in parsed.outputs or ())
    return parsed, InferRequest(inputs, outputs, dict(parsed.parameters or {}))


def _loads(text: bytes) -> Any:
    """orjson (several times faster on long number arrays); Python's json for what only it
    reads, NaN and Infinity, so such values are refused naming their input, not as bad JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _timeout(parsed: InferenceRequest) -> float | None:
    value = (parsed.parameters or {}).get("timeout")
    if value is None:
        return None
    if not isinstance(value, int | float) or value <= 0:
        raise InvalidInput(
            f"parameters.timeout must be a positive number of seconds, got {value!r}"
        )
    return float(value)


def _tensor_meta(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def _metadata(model: ModelVersion) -> dict[str, Any]:
    cfg = model.config
    meta: dict[str, Any] = {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": f"augury_{cfg.runtime}",
        "inputs": [_tensor_meta(t) for t in cfg.inputs],
        "outputs": [_tensor_meta(t) for t in cfg.outputs],
        "parameters": {"task": cfg.task},
    }
    if cfg.labels:
        meta["parameters"]["labels"] = list(cfg.labels)
    describe = getattr(model.pipeline.preprocessor, "describe", None)
    if describe is not None:  # tabular: the named features, in column order
        details = describe()
        meta["parameters"]["features"] = [f["name"] for f in details]
        meta["parameters"]["feature_details"] = details
    return meta


def _config(model: ModelVersion) -> dict[str, Any]:
    cfg, b = model.config, model.config.batching
    return {
        "name": model.name,
        "platform": f"augury_{cfg.runtime}",
        "max_batch_size": b.max_batch_size,
        "dynamic_batching": {
            "max_queue_delay_microseconds": int(b.max_queue_delay_ms * 1000),
            "preferred_batch_size": list(b.preferred_batch_sizes),
        },
        "instance_group": [{"count": b.instances, "kind": "KIND_CPU"}],
        "input": [_tensor_meta(t) for t in cfg.inputs],
        "output": [_tensor_meta(t) for t in cfg.outputs],
    }
