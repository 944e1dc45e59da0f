"""Routes of the OpenAI-compatible API; each handler hands its request to a serving class."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from augury.server.openai.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from augury.server.openai.serving_chat import ChatServing
from augury.server.openai.serving_completions import CompletionServing
from augury.server.state import ServerState, get_state

router = APIRouter(prefix="/v1", tags=["openai"])

State = Annotated[ServerState, Depends(get_state)]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429, 503, 504)
}


def _generation_responses(model: type) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: JSON unless stream=true, then Server-Sent Events."""
    # Each event as OpenAPI 3.2 describes server-sent events: `data` holds one JSON chunk.
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
    }
    ok = {"model": model, "content": {"text/event-stream": {"itemSchema": event}}}
    return {200: ok, **ERROR_RESPONSES}


@router.post(
    "/chat/completions",
    response_model=None,
    responses=_generation_responses(ChatCompletionResponse),
)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, state: State
) -> Response:
    """Chat completion of a conversation (OpenAI `chat.completions.create`)."""
    return await ChatServing(state).create(body, request)


@router.post(
    "/completions",
    response_model=None,
    responses=_generation_responses(CompletionResponse),
)
async def create_completion(body: CompletionRequest, request: Request, state: State) -> Response:
    """Text completion of one or more prompts (OpenAI `completions.create`)."""
    return await CompletionServing(state).create(body, request)


@router.get("/models", responses=ERROR_RESPONSES)
async def list_models(state: State) -> ModelList:
    """The models this server serves."""
    state.check_available()
    return ModelList(data=[_card(state, model_id) for model_id in sorted(state.engines)])


@router.get("/models/{model_id:path}", responses=ERROR_RESPONSES)
async def get_model(model_id: str, state: State) -> ModelCard:
    """One model, or 404."""
    state.engine(model_id)
    return _card(state, model_id)


def _card(state: ServerState, model_id: str) -> ModelCard:
    engine = state.engines[model_id]
    return ModelCard(id=model_id, created=state.created, max_model_len=engine.max_model_len)
