"""What chat and completions share: model lookup, sampling parameters, limits, admission,
timeouts and the stream of engine outputs.

A request is *admitted* once every prompt's first engine output has arrived. Until then no
response has started, so bad input (ValueError), a full queue (QueueFullError) or a timeout
still become a proper HTTP error instead of a broken stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from augury.llm.engine import QueueFullError
from augury.llm.outputs import CompletionDelta, RequestOutput, TokenLogprob
from augury.llm.sampling_params import SamplingParams
from augury.server.config import RequestLimits
from augury.server.context import request_id_of
from augury.server.engine_client import EngineClient
from augury.server.errors import APIError, from_value_error
from augury.server.limits import check_cap
from augury.server.metrics import RequestTimer
from augury.server.openai.protocol import SamplingFields, UsageInfo
from augury.server.state import ServerState
from augury.server.streaming import SSE_DONE, merge, sse_event, until_disconnected

log = logging.getLogger(__name__)


@dataclass
class ChoiceState:
    """Everything one choice (prompt x sample) produced so far."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None

    def add(self, delta: CompletionDelta) -> None:
        self.text += delta.text
        self.token_ids += delta.token_ids
        self.logprobs += delta.logprobs or []
        self.finish_reason = delta.finish_reason
        self.stop_reason = delta.stop_reason


class Generation:
    """An admitted request: per prompt, its first engine output and the stream of the rest."""

    def __init__(
        self,
        serving: OpenAIServing,
        engine: EngineClient,
        firsts: list[RequestOutput],
        streams: list[AsyncGenerator[RequestOutput]],
        n: int,
        api_key: str,
        deadline: float,
        timer: RequestTimer,
    ) -> None:
        self.serving = serving
        self.engine = engine
        self.firsts = firsts
        self.streams = streams
        self.n = n
        self.api_key = api_key
        self.deadline = deadline
        self.timer = timer
        self.usage: dict[int, tuple[int, int]] = {}
        """prompt index -> (prompt tokens, completion tokens)."""

    @property
    def usage_info(self) -> UsageInfo:
        prompt = sum(p for p, _ in self.usage.values())
        completion = sum(c for _, c in self.usage.values())
        return UsageInfo(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )

    def choice_index(self, prompt_index: int, sample_index: int) -> int:
        return prompt_index * self.n + sample_index

    async def outputs(self) -> AsyncGenerator[tuple[int, RequestOutput]]:
        """(prompt index, output) until all prompts finish; raises 504 past the deadline and
        500 when the engine fails. Leaving early aborts every prompt's request."""
        finished = False
        loop = asyncio.get_running_loop()
        try:
            for index, first in enumerate(self.firsts):
                yield index, self._checked(index, first)
            async with contextlib.aclosing(merge(self.streams)) as merged:
                while True:
                    remaining = self.deadline - loop.time()
                    try:
                        index, out = await asyncio.wait_for(anext(merged), max(remaining, 0))
                    except StopAsyncIteration:
                        finished = True
                        return
                    except TimeoutError:
                        raise self.serving.timeout_error() from None
                    self.timer.output(self.engine.stats().last_step_ms)
                    yield index, self._checked(index, out)
        finally:
            await self.close()
            self._settle(finished)

    async def close(self) -> None:
        """Abort whatever is still running (a no-op once everything finished)."""
        for stream in self.streams:
            # A stream still being read by merge() (its pump task) cannot be closed from here;
            # merge's own cleanup cancels that read, which aborts the request.
            with contextlib.suppress(RuntimeError):
                await stream.aclose()

    def _checked(self, index: int, out: RequestOutput) -> RequestOutput:
        if out.error is not None:
            log.error("engine failed request %s: %s", out.request_id, out.error)
            raise APIError(500, f"the engine failed this request ({out.request_id})")
        self.usage[index] = (out.usage.prompt_tokens, out.usage.completion_tokens)
        return out

    def _settle(self, finished: bool) -> None:
        info = self.usage_info
        self.serving.state.limiter.charge(self.api_key, info.total_tokens)
        if finished:
            self.timer.finish(info.prompt_tokens, info.completion_tokens)


class OpenAIServing:
    """Base of the chat and completions serving classes."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    @property
    def limits(self) -> RequestLimits:
        return self.state.config.limits

    def timeout_error(self) -> APIError:
        seconds = self.state.config.request_timeout
        return APIError(
            504,
            f"generation took longer than this server's request timeout of {seconds:g} s "
            "and was stopped; lower max_tokens or retry later",
            code="request_timeout",
        )

    def check_common(self, req: SamplingFields) -> None:
        """Caps shared by both APIs (stop strings, n, logit_bias...)."""
        lim = self.limits
        check_cap("n", req.n, lim.max_n)
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        check_cap("stop", len(stops), lim.max_stop, "stop strings")
        for s in stops:
            check_cap("stop", len(s), lim.max_stop_length, "characters in a stop string")
        check_cap("logit_bias", len(req.logit_bias or {}), lim.max_logit_bias, "entries")
        if req.stream_options is not None and not req.stream:
            raise APIError(400, "stream_options: only allowed with stream=true", "stream_options")

    def check_prompt(
        self, engine: EngineClient, prompt_ids: Sequence[int], max_tokens: int
    ) -> None:
        """Prompt caps, and prompt + max_tokens within the context and the whole KV cache."""
        check_cap("prompt", len(prompt_ids), self.limits.max_prompt_tokens, "prompt tokens")
        total = len(prompt_ids) + max_tokens
        cache = _cache_tokens(engine)
        if total > min(engine.max_model_len, cache):
            where = (
                f"the context length of {engine.max_model_len}"
                if engine.max_model_len <= cache
                else f"this server's KV cache ({cache} tokens)"
            )
            raise APIError(
                400,
                f"max_tokens: prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) = "
                f"{total} exceeds {where}; shorten the prompt or lower max_tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )

    def default_max_tokens(self, engine: EngineClient, prompt_len: int) -> int:
        """Room left in the context (and in the whole KV cache), capped by the server limit."""
        room = min(engine.max_model_len, _cache_tokens(engine)) - prompt_len
        cap = self.limits.max_tokens
        return max(1, min(room, cap) if cap is not None else room)

    def sampling_params(
        self, req: SamplingFields, max_tokens: int, logprobs: int | None
    ) -> SamplingParams:
        """Engine parameters from the request; a bad value is a 400 naming the field."""
        check_cap("max_tokens", max_tokens, self.limits.max_tokens)
        if logprobs is not None:
            check_cap("top_logprobs", logprobs, self.limits.max_top_logprobs)
        bias: dict[int, float] = {}
        for key, value in (req.logit_bias or {}).items():
            if not key.strip().lstrip("-").isdigit():
                raise APIError(400, f"logit_bias: key {key!r} is not a token id", "logit_bias")
            bias[int(key)] = value
        given: dict[str, Any] = {
            "temperature": req.temperature,
            "top_p": req.top_p,
            "top_k": req.top_k,
            "min_p": req.min_p,
            "repetition_penalty": req.repetition_penalty,
            "presence_penalty": req.presence_penalty,
            "frequency_penalty": req.frequency_penalty,
        }
        try:
            return SamplingParams(
                n=req.n,
                max_tokens=max_tokens,
                min_tokens=req.min_tokens,
                seed=req.seed if req.seed is None or req.seed < 1 << 63 else req.seed - (1 << 64),
                stop=tuple([req.stop] if isinstance(req.stop, str) else req.stop or ()),
                stop_token_ids=tuple(req.stop_token_ids or ()),
                logit_bias=bias,
                ignore_eos=req.ignore_eos,
                logprobs=logprobs,
                skip_special_tokens=req.skip_special_tokens,
                **{k: v for k, v in given.items() if v is not None},
            )
        except ValueError as exc:
            raise from_value_error(exc) from None

    async def tokenize(self, engine: EngineClient, prompt: str | Sequence[int]) -> list[int]:
        """Prompt ids (off the event loop for long texts); 400 for an empty or invalid prompt."""
        try:
            if isinstance(prompt, str) and len(prompt) > 4096:
                return await asyncio.to_thread(engine.tokenize, prompt)
            return engine.tokenize(prompt)
        except ValueError as exc:
            raise from_value_error(exc, param="prompt") from None

    async def admit(
        self,
        request: Request,
        engine: EngineClient,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        response_id: str,
    ) -> Generation:
        """Start one engine request per prompt and wait for each one's first output."""
        api_key = str(request.scope.get("state", {}).get("api_key", "anonymous"))
        self.state.limiter.acquire(api_key)
        deadline = asyncio.get_running_loop().time() + self.state.config.request_timeout
        timer = self.state.metrics.track(engine.model_id)
        gens = [
            engine.generate(list(ids), params, request_id=f"{response_id}-{i}")
            for i, ids in enumerate(prompts)
        ]
        tasks = [asyncio.ensure_future(self._first(g, deadline)) for g in gens]
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:  # the client left while waiting: abort everything
            await _close_all(gens, tasks)
            raise
        failure = next((t.exception() for t in tasks if t.exception() is not None), None)
        if failure is not None:
            await _close_all(gens, tasks)
            raise self._admission_error(failure, request) from None
        timer.output(engine.stats().last_step_ms)
        firsts = [t.result() for t in tasks]
        return Generation(self, engine, firsts, gens, params.n, api_key, deadline, timer)

    async def start_stream(
        self,
        request: Request,
        engine: EngineClient,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        response_id: str,
    ) -> Generation:
        """Admit a streaming request (aborted if the client leaves while it waits)."""
        return await until_disconnected(
            request, self.admit(request, engine, prompts, params, response_id)
        )

    async def run_to_end(
        self,
        request: Request,
        engine: EngineClient,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        response_id: str,
    ) -> tuple[dict[int, ChoiceState], UsageInfo]:
        """Generate everything for a non-streaming request: choice index -> its state."""

        async def work() -> tuple[dict[int, ChoiceState], UsageInfo]:
            gen = await self.admit(request, engine, prompts, params, response_id)
            choices: dict[int, ChoiceState] = {}
            async for prompt_index, out in gen.outputs():
                for delta in out.outputs:
                    index = gen.choice_index(prompt_index, delta.index)
                    choices.setdefault(index, ChoiceState()).add(delta)
            return choices, gen.usage_info

        return await until_disconnected(request, work())

    @staticmethod
    async def _first(gen: AsyncGenerator[RequestOutput], deadline: float) -> RequestOutput:
        remaining = deadline - asyncio.get_running_loop().time()
        return await asyncio.wait_for(anext(gen), max(remaining, 0))

    def _admission_error(self, exc: BaseException, request: Request) -> BaseException:
        if isinstance(exc, QueueFullError):
            return APIError(
                429,
                f"the server is at capacity ({exc}); retry shortly",
                code="queue_full",
                headers={"Retry-After": "1"},
            )
        if isinstance(exc, ValueError):
            return from_value_error(exc)
        if isinstance(exc, TimeoutError):
            return self.timeout_error()
        if isinstance(exc, RuntimeError) and "not running" in str(exc):
            return APIError(503, "the engine is not running", headers={"Retry-After": "5"})
        if isinstance(exc, StopAsyncIteration):
            log.error(
                "engine ended request without output (request %s)", request_id_of(request.scope)
            )
            return APIError(500, "the engine returned no output")
        return exc


async def _close_all(
    gens: Sequence[AsyncGenerator[RequestOutput]], tasks: Sequence[asyncio.Future[RequestOutput]]
) -> None:
    """Abort every prompt of a request that failed or was cancelled during admission."""
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    for gen in gens:
        await gen.aclose()


def _cache_tokens(engine: EngineClient) -> int:
    stats = engine.stats()
    return stats.kv_blocks_total * stats.block_size


def finite(logprob: float) -> float:
    """JSON has no -inf: impossible tokens get OpenAI's -9999.0."""
    return logprob if logprob > -9999.0 else -9999.0


async def sse_events(request_id: str, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A response's SSE events, then `data: [DONE]`. An error after the response has begun is
    reported in-band as an error envelope event (what the OpenAI SDK raises from)."""
    try:
        async with contextlib.aclosing(events) as stream:  # type: ignore[type-var]
            async for event in stream:
                yield event
    except APIError as exc:
        yield sse_event(json.dumps(exc.body()))
    except Exception:
        log.exception("stream failed", extra={"request_id": request_id})
        error = APIError(500, f"internal server error (request id {request_id})")
        yield sse_event(json.dumps(error.body()))
    yield SSE_DONE
