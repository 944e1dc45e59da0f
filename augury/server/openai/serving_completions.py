"""POST /v1/completions: a prompt (or a batch of prompts, as text or token ids) -> engine."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from fastapi import Request
from starlette.responses import Response

from augury.llm.outputs import TokenLogprob
from augury.server.context import request_id_of
from augury.server.engine_client import EngineClient
from augury.server.errors import APIError
from augury.server.limits import check_cap
from augury.server.openai.protocol import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    random_id,
)
from augury.server.openai.serving import Generation, OpenAIServing, finite, sse_events
from augury.server.streaming import sse_event, sse_response


class CompletionServing(OpenAIServing):
    async def create(self, req: CompletionRequest, request: Request) -> Response:
        engine = self.state.engine(req.model)
        self.check_common(req)
        self._check_supported(req)
        prompts = _split_prompts(req.prompt)
        check_cap("prompt", len(prompts), self.limits.max_prompts, "prompts")
        prompt_ids = [await self.tokenize(engine, p) for p in prompts]
        longest = max(len(ids) for ids in prompt_ids)
        max_tokens = req.max_tokens or min(16, self.default_max_tokens(engine, longest))
        for ids in prompt_ids:
            self.check_prompt(engine, ids, max_tokens)
        params = self.sampling_params(req, max_tokens, req.logprobs)
        echo = [_prompt_text(engine, p) if req.echo else "" for p in prompts]
        response_id = random_id("cmpl")
        if req.stream:
            gen = await self.start_stream(request, engine, prompt_ids, params, response_id)
            events = self._stream(gen, req, response_id, echo)
            return sse_response(sse_events(request_id_of(request.scope), events), gen.close)
        choices, usage = await self.run_to_end(request, engine, prompt_ids, params, response_id)
        body = CompletionResponse(
            id=response_id,
            model=engine.model_id,
            choices=[
                CompletionChoice(
                    index=i,
                    text=echo[i // req.n] + c.text,
                    logprobs=None if req.logprobs is None else self._logprobs(engine, c.logprobs),
                    finish_reason=c.finish_reason,  # type: ignore[arg-type]
                    stop_reason=c.stop_reason,
                )
                for i, c in sorted(choices.items())
            ],
            usage=usage,
        )  # fmt: skip
        return Response(body.model_dump_json(), media_type="application/json")

    @staticmethod
    def _check_supported(req: CompletionRequest) -> None:
        if req.suffix:
            raise APIError(400, "suffix: insertion is not supported by this server", "suffix")
        if req.best_of is not None and req.best_of != req.n:
            raise APIError(400, f"best_of: only best_of == n ({req.n}) is supported", "best_of")
        if req.echo and req.logprobs is not None:
            raise APIError(
                400, "echo: prompt logprobs (echo with logprobs) are not supported", "echo"
            )

    @staticmethod
    def _logprobs(
        engine: EngineClient, items: Sequence[TokenLogprob], offset: int = 0
    ) -> CompletionLogprobs:
        texts = engine.token_texts([it.token_id for it in items])
        offsets = []
        for text in texts:
            offsets.append(offset)
            offset += len(text)
        tops = []
        for it in items:
            names = engine.token_texts([t for t, _ in it.top])
            tops.append({name: finite(lp) for name, (_, lp) in zip(names, it.top, strict=True)})
        return CompletionLogprobs(
            tokens=texts,
            token_logprobs=[finite(it.logprob) for it in items],
            top_logprobs=tops,  # type: ignore[arg-type]
            text_offset=offsets,
        )

    async def _stream(
        self, gen: Generation, req: CompletionRequest, response_id: str, echo: list[str]
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        seen: dict[int, int] = {}
        """choice index -> characters sent so far (echoed prompt included)."""

        def chunk(choices: list[CompletionChoice], usage: bool = False) -> bytes:
            body = CompletionResponse(
                id=response_id, created=created, model=gen.engine.model_id, choices=choices,
                usage=gen.usage_info if usage else None,
            )  # fmt: skip
            return sse_event(body.model_dump_json())

        async for prompt_index, out in gen.outputs():
            for delta in out.outputs:
                index = gen.choice_index(prompt_index, delta.index)
                prefix = echo[prompt_index] if index not in seen else ""
                start = seen.get(index, 0) + len(prefix)  # where delta.text begins
                seen[index] = start + len(delta.text)
                text = prefix + delta.text
                if not (text or delta.logprobs or delta.finish_reason):
                    continue
                logprobs = None
                if req.logprobs is not None:
                    logprobs = self._logprobs(gen.engine, delta.logprobs or [], start)
                choice = CompletionChoice(
                    index=index, text=text, logprobs=logprobs,
                    finish_reason=delta.finish_reason,  # type: ignore[arg-type]
                    stop_reason=delta.stop_reason,
                )  # fmt: skip
                yield chunk([choice])
        if include_usage:
            yield chunk([], usage=True)


def _split_prompts(prompt: str | list[str] | list[int] | list[list[int]]) -> list[str | list[int]]:
    """One or more prompts; each is text or token ids."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise APIError(400, "prompt: is empty; send text or token ids", param="prompt")
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    return list(prompt)  # type: ignore[arg-type]


def _prompt_text(engine: EngineClient, prompt: str | list[int]) -> str:
    """The prompt as text, for echo (token ids are spelled token by token)."""
    return prompt if isinstance(prompt, str) else "".join(engine.token_texts(prompt))
