"""The language-model task: each row is a prompt or an OpenAI chat/completions request body.

Rows go through the server's own validation and mapping (the pydantic request models and the
serving classes' `sampling_params`, caps and context checks), so a batch row means exactly what
the same body means on /v1/chat/completions or /v1/completions. Requests run at a low priority
(interactive requests, priority 0, are scheduled first) with many in flight, so the engine's
batch stays full; a row that fails becomes an error with the reason and the others go on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from augury.batch.job import ChunkResult
from augury.batch.readers import Chunk
from augury.llm.engine import QueueFullError
from augury.server.config import ServerConfig
from augury.server.engine_client import EngineClient
from augury.server.errors import APIError, validation_message
from augury.server.limits import RateLimiter, check_cap
from augury.server.metrics import ServerMetrics
from augury.server.openai.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    UsageInfo,
    random_id,
)
from augury.server.openai.serving import ChoiceState
from augury.server.openai.serving_chat import ChatServing
from augury.server.openai.serving_completions import CompletionServing, _split_prompts
from augury.server.state import ServerState

BATCH_PRIORITY = 100
"""Engine priority of batch rows; interactive requests use 0 and lower values run first."""


@dataclass
class Generated:
    """A finished row: the validated request and what each of its samples produced."""

    request: ChatCompletionRequest | CompletionRequest
    choices: dict[int, ChoiceState] = field(default_factory=dict)
    usage: UsageInfo = field(
        default_factory=lambda: UsageInfo(prompt_tokens=0, completion_tokens=0, total_tokens=0)
    )

    @property
    def is_chat(self) -> bool:
        return isinstance(self.request, ChatCompletionRequest)


RowFormatter = Callable[[EngineClient, Generated], dict[str, Any]]


def plain_row(engine: EngineClient, gen: Generated) -> dict[str, Any]:
    """The CLI's output row: text, finish reason and usage (`texts` too when n > 1)."""
    first = gen.choices.get(0, ChoiceState())
    row: dict[str, Any] = {
        "text": first.text,
        "finish_reason": first.finish_reason,
        "prompt_tokens": gen.usage.prompt_tokens,
        "completion_tokens": gen.usage.completion_tokens,
    }
    if len(gen.choices) > 1:
        row["texts"] = [c.text for _, c in sorted(gen.choices.items())]
    return row


def response_body(engine: EngineClient, gen: Generated) -> dict[str, Any]:
    """The body /v1/chat/completions or /v1/completions would have answered."""
    choices = sorted(gen.choices.items())
    if isinstance(gen.request, ChatCompletionRequest):
        serving = ChatServing.__new__(ChatServing)  # _choice uses no server state
        chat = ChatCompletionResponse(
            id=random_id("chatcmpl"),
            model=engine.model_id,
            choices=[serving._choice(engine, i, c, gen.request.logprobs) for i, c in choices],
            usage=gen.usage,
        )
        return chat.model_dump(mode="json")
    req = gen.request
    completion = CompletionResponse(
        id=random_id("cmpl"),
        model=engine.model_id,
        choices=[
            CompletionChoice(
                index=i,
                text=c.text,
                logprobs=None
                if req.logprobs is None
                else CompletionServing._logprobs(engine, c.logprobs),
                finish_reason=c.finish_reason,  # type: ignore[arg-type]
                stop_reason=c.stop_reason,
            )
            for i, c in choices
        ],
        usage=gen.usage,
    )
    return completion.model_dump(mode="json")


def offline_state(config: ServerConfig | None = None) -> ServerState:
    """Server state for running request bodies outside a server (the CLI): default limits."""
    config = config or ServerConfig()
    return ServerState(
        config=config, metrics=ServerMetrics(lambda: {}), limiter=RateLimiter(None, None)
    )


class LLMTask:
    """Runs a chunk's rows through an engine, at most `max_in_flight` at a time."""

    def __init__(
        self,
        engine: EngineClient,
        state: ServerState,
        defaults: Mapping[str, Any] | None = None,
        *,
        chat: bool = False,
        max_in_flight: int = 64,
        priority: int = BATCH_PRIORITY,
        strict_model: bool = False,
        format_row: RowFormatter = plain_row,
    ) -> None:
        """defaults: request fields for rows that do not set them (max_tokens, temperature...).
        chat: a row's plain `prompt` is sent as a user message through the chat template.
        strict_model: a row naming another model fails (the server); otherwise it is ignored."""
        self.engine = engine
        self.chat_serving = ChatServing(state)
        self.completion_serving = CompletionServing(state)
        self.defaults = dict(defaults or {})
        self.chat = chat
        self.slots = asyncio.Semaphore(max_in_flight)
        self.priority = priority
        self.strict_model = strict_model
        self.format_row = format_row
        self.prefix = f"batch-{uuid.uuid4().hex[:8]}"

    async def run_chunk(self, chunk: Chunk) -> ChunkResult:
        records = chunk.as_records()
        outcomes = await asyncio.gather(*(self._row(r) for r in records))
        rows, positions, errors = [], [], []
        prompt_tokens = completion_tokens = 0
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, str):
                errors.append((i, outcome))
                continue
            rows.append(self.format_row(self.engine, outcome))
            positions.append(i)
            prompt_tokens += outcome.usage.prompt_tokens
            completion_tokens += outcome.usage.completion_tokens
        return ChunkResult(
            rows, np.array(positions, np.int64), errors, prompt_tokens, completion_tokens
        )

    async def _row(self, record: Mapping[str, Any]) -> Generated | str:
        """The row's result, or the reason it failed."""
        async with self.slots:
            try:
                request, ids, params = await self._prepare(record)
                return await self._generate(request, ids, params)
            except APIError as exc:
                return exc.message
            except ValidationError as exc:
                return validation_message(exc.errors(include_url=False))[0]
            except ValueError as exc:
                return str(exc)

    def _body(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """The request body of a row (an OpenAI batch line's `body`, or the row itself)."""
        body = record.get("body")
        url = str(record.get("url") or "")
        if not isinstance(body, dict):
            body, url = dict(record), ""
        is_chat = "messages" in body or url.endswith("/chat/completions")
        if self.chat and not is_chat and isinstance(body.get("prompt"), str):
            body = dict(body)
            body["messages"] = [{"role": "user", "content": body.pop("prompt")}]
            is_chat = True
        if not is_chat and "prompt" not in body:
            raise APIError(400, "the row has neither 'prompt' nor 'messages'", param="prompt")
        model = body.get("model")
        if self.strict_model and model is not None and model != self.engine.model_id:
            raise APIError(
                400,
                f"model {model!r} does not exist; this batch runs {self.engine.model_id!r}",
                param="model",
            )
        merged = {**self.defaults, **body, "model": self.engine.model_id, "stream": False}
        merged.pop("stream_options", None)
        return merged, is_chat

    async def _prepare(
        self, record: Mapping[str, Any]
    ) -> tuple[ChatCompletionRequest | CompletionRequest, list[int], Any]:
        body, is_chat = self._body(record)
        engine = self.engine
        if is_chat:
            chat = ChatCompletionRequest.model_validate(body)
            serving: ChatServing | CompletionServing = self.chat_serving
            serving.check_common(chat)
            check_cap("messages", len(chat.messages), serving.limits.max_messages, "messages")
            ids = await serving.tokenize(engine, ChatServing._render(engine, chat.messages))
            max_tokens = chat.max_completion_tokens or chat.max_tokens
            max_tokens = max_tokens or serving.default_max_tokens(engine, len(ids))
            serving.check_prompt(engine, ids, max_tokens)
            params = serving.sampling_params(chat, max_tokens, ChatServing._logprobs(chat))
            return chat, ids, params
        req = CompletionRequest.model_validate(body)
        serving = self.completion_serving
        serving.check_common(req)
        CompletionServing._check_supported(req)
        prompts = _split_prompts(req.prompt)
        if len(prompts) != 1:
            raise APIError(400, "prompt: a batch row takes one prompt, not a list", "prompt")
        ids = await serving.tokenize(engine, prompts[0])
        max_tokens = req.max_tokens or min(16, serving.default_max_tokens(engine, len(ids)))
        serving.check_prompt(engine, ids, max_tokens)
        return req, ids, serving.sampling_params(req, max_tokens, req.logprobs)

    async def _generate(
        self, request: ChatCompletionRequest | CompletionRequest, ids: list[int], params: Any
    ) -> Generated:
        gen = Generated(request)
        delay = 0.05
        while True:
            request_id = f"{self.prefix}-{uuid.uuid4().hex[:12]}"
            try:
                async for out in self.engine.generate(ids, params, request_id, self.priority):
                    if out.error is not None:
                        raise APIError(500, f"the engine failed this request: {out.error}")
                    for delta in out.outputs:
                        gen.choices.setdefault(delta.index, ChoiceState()).add(delta)
                    u = out.usage
                    gen.usage = UsageInfo(
                        prompt_tokens=u.prompt_tokens,
                        completion_tokens=u.completion_tokens,
                        total_tokens=u.prompt_tokens + u.completion_tokens,
                    )
                return gen
            except QueueFullError:  # interactive traffic filled the queue: back off, retry
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
