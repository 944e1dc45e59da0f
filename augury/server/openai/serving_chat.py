"""POST /v1/chat/completions: messages -> chat template -> engine -> OpenAI chat objects."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from fastapi import Request
from starlette.responses import Response

from augury.llm.outputs import CompletionDelta, TokenLogprob
from augury.server.context import request_id_of
from augury.server.engine_client import EngineClient
from augury.server.errors import APIError, from_value_error
from augury.server.limits import check_cap
from augury.server.openai.protocol import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    ChatMessage,
    ChatResponseMessage,
    ChatTokenLogprob,
    DeltaMessage,
    TopLogprob,
    random_id,
)
from augury.server.openai.serving import (
    ChoiceState,
    Generation,
    OpenAIServing,
    finite,
    sse_events,
)
from augury.server.streaming import sse_event, sse_response


class ChatServing(OpenAIServing):
    async def create(self, req: ChatCompletionRequest, request: Request) -> Response:
        engine = self.state.engine(req.model)
        self.check_common(req)
        check_cap("messages", len(req.messages), self.limits.max_messages, "messages")
        prompt_ids = await self.tokenize(engine, self._render(engine, req.messages))
        max_tokens = req.max_completion_tokens or req.max_tokens
        max_tokens = max_tokens or self.default_max_tokens(engine, len(prompt_ids))
        self.check_prompt(engine, prompt_ids, max_tokens)
        params = self.sampling_params(req, max_tokens, self._logprobs(req))
        response_id = random_id("chatcmpl")
        if req.stream:
            gen = await self.start_stream(request, engine, [prompt_ids], params, response_id)
            events = self._stream(gen, req, response_id)
            return sse_response(sse_events(request_id_of(request.scope), events), gen.close)
        choices, usage = await self.run_to_end(request, engine, [prompt_ids], params, response_id)
        body = ChatCompletionResponse(
            id=response_id,
            model=engine.model_id,
            choices=[self._choice(engine, i, c, req.logprobs) for i, c in sorted(choices.items())],
            usage=usage,
        )
        return Response(body.model_dump_json(), media_type="application/json")

    @staticmethod
    def _logprobs(req: ChatCompletionRequest) -> int | None:
        if req.top_logprobs is not None and not req.logprobs:
            raise APIError(400, "top_logprobs: needs logprobs=true", param="top_logprobs")
        return (req.top_logprobs or 0) if req.logprobs else None

    @staticmethod
    def _render(engine: EngineClient, messages: Sequence[ChatMessage]) -> str:
        plain = []
        for m in messages:
            content = m.content
            if isinstance(content, list):
                content = "".join(part.text for part in content)
            role = "system" if m.role == "developer" else m.role
            plain.append({"role": role, "content": content or ""})
        try:
            return engine.apply_chat_template(plain)
        except ValueError as exc:
            raise from_value_error(exc, param="messages") from None

    def _choice(
        self, engine: EngineClient, index: int, state: ChoiceState, logprobs: bool
    ) -> ChatChoice:
        return ChatChoice(
            index=index,
            message=ChatResponseMessage(content=state.text),
            logprobs=self._chat_logprobs(engine, state.logprobs) if logprobs else None,
            finish_reason=state.finish_reason,  # type: ignore[arg-type]
            stop_reason=state.stop_reason,
        )

    @staticmethod
    def _chat_logprobs(engine: EngineClient, items: Sequence[TokenLogprob]) -> ChatLogprobs:
        ids = [it.token_id for it in items] + [t for it in items for t, _ in it.top]
        text = dict(zip(ids, engine.token_texts(ids), strict=True))

        def top(token_id: int, logprob: float) -> TopLogprob:
            word = text[token_id]
            return TopLogprob(token=word, logprob=finite(logprob), bytes=list(word.encode()))

        content = [
            ChatTokenLogprob(
                **top(it.token_id, it.logprob).model_dump(),
                top_logprobs=[top(t, lp) for t, lp in it.top],
            )
            for it in items
        ]
        return ChatLogprobs(content=content)

    async def _stream(
        self, gen: Generation, req: ChatCompletionRequest, response_id: str
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        usage_field = {"usage": None} if include_usage else {}
        model = gen.engine.model_id

        def chunk(choices: list[ChatChunkChoice], **extra: object) -> bytes:
            body = ChatCompletionChunk(
                id=response_id, object="chat.completion.chunk", created=created, model=model,
                choices=choices, **{**usage_field, **extra},  # type: ignore[arg-type]
            )  # fmt: skip
            return sse_event(body.model_dump_json(exclude_unset=True))

        for index in range(req.n):
            role = DeltaMessage(role="assistant", content="")
            yield chunk(
                [ChatChunkChoice(index=index, delta=role, logprobs=None, finish_reason=None)]
            )
        async for _, out in gen.outputs():
            for delta in out.outputs:
                if delta.text or delta.logprobs or delta.finish_reason:
                    yield chunk([self._chunk_choice(gen.engine, delta, req.logprobs)])
        if include_usage:
            yield chunk([], usage=gen.usage_info)

    def _chunk_choice(
        self, engine: EngineClient, delta: CompletionDelta, logprobs: bool
    ) -> ChatChunkChoice:
        return ChatChunkChoice(
            index=delta.index,
            delta=DeltaMessage(content=delta.text),
            logprobs=self._chat_logprobs(engine, delta.logprobs or []) if logprobs else None,
            finish_reason=delta.finish_reason,  # type: ignore[arg-type]
        )
