"""OpenAI `POST /v1/embeddings` over the repository's embedding models.

Errors use the OpenAI envelope (this is an OpenAI route). `encoding_format` "base64" answers
each vector as the base64 of its little-endian float32 bytes, as OpenAI's clients expect.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import JSONResponse, Response

from augury.predict.errors import PredictError
from augury.predict.pipeline import InferRequest
from augury.predict.repository import ModelRepository
from augury.server.errors import APIError, validation_message
from augury.server.kserve.routes import from_exception

MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def build_embeddings_router(repository: ModelRepository) -> APIRouter:
    """`POST /v1/embeddings` answering with the repository's models of task "embedding"."""
    router = APIRouter(tags=["openai"])

    @router.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        try:
            body = EmbeddingRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            message, param = validation_message(exc.errors())
            return APIError(400, message, param=param).response()
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > MAX_INPUTS or any(not t for t in texts):
            return APIError(
                400, f"input must be 1 to {MAX_INPUTS} non-empty strings", param="input"
            ).response()
        try:
            model = repository.get(body.model)
        except PredictError as exc:
            status = from_exception(exc).status_code
            return APIError(status, str(exc), param="model", code="model_not_found").response()
        if model.config.task != "embedding":
            return APIError(
                400, f"model {body.model!r} is a {model.config.task} model, not an embedding model",
                param="model",
            ).response()  # fmt: skip
        text_input = model.config.inputs[0].name
        array = np.empty(len(texts), dtype=object)
        array[:] = texts
        try:
            result = await model.infer(InferRequest({text_input: array}))
        except PredictError as exc:
            status = from_exception(exc).status_code
            return APIError(status, str(exc)).response()
        vectors = next(iter(result.outputs.values())).astype(np.float32)  # (n, dim)
        if body.dimensions is not None:
            if not 1 <= body.dimensions <= vectors.shape[1]:
                return APIError(
                    400, f"dimensions must be in 1..{vectors.shape[1]}", param="dimensions"
                ).response()
            vectors = vectors[:, : body.dimensions]
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        tokens = _count_tokens(model.pipeline.preprocessor, texts)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return router


def _encode(vector: Any, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _count_tokens(preprocessor: Any, texts: list[str]) -> int:
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is None:
        return 0
    return int(sum(int(sum(e.attention_mask)) for e in tokenizer.encode_batch(texts)))
