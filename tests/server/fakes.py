"""A scriptable EngineClient for error paths the real engine cannot be pushed into cheaply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence

from augury.llm.outputs import CompletionDelta, EngineStats, RequestOutput, Usage
from augury.llm.sampling_params import SamplingParams


class FakeEngine:
    """Answers every prompt with `tokens` one-character tokens, one per `step_s`; or raises
    `fail_with` when a request starts; or reports `engine_error` as the engine does."""

    def __init__(
        self,
        model_id: str = "fake",
        tokens: int = 3,
        step_s: float = 0.0,
        fail_with: BaseException | None = None,
        tokenize_error: BaseException | None = None,
        engine_error: str | None = None,
    ) -> None:
        self._model_id = model_id
        self.tokens = tokens
        self.step_s = step_s
        self.fail_with = fail_with
        self.tokenize_error = tokenize_error
        self.engine_error = engine_error
        self.aborted: list[str] = []
        self.running = 0

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def max_model_len(self) -> int:
        return 512

    async def generate(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams,
        request_id: str | None = None,
        priority: int = 0,
    ) -> AsyncGenerator[RequestOutput]:
        if self.fail_with is not None:
            raise self.fail_with
        rid = request_id or "fake"
        prompt_len = len(prompt)
        self.running += 1
        finished = False
        try:
            for i in range(self.tokens):
                await asyncio.sleep(self.step_s)
                last = i == self.tokens - 1
                reason = "length" if last else None
                delta = CompletionDelta(index=0, text="x", token_ids=[1], finish_reason=reason)
                if self.engine_error is not None:
                    delta.finish_reason = "error"
                    last = True
                finished = last
                out = RequestOutput(rid, [delta], last, Usage(prompt_len, i + 1), self.engine_error)
                yield out
                if last:
                    return
        finally:
            self.running -= 1
            if not finished:
                self.aborted.append(rid)

    def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    def stats(self) -> EngineStats:
        return EngineStats(self.running, 0, 0, 64, 16, 0, 0, 0, 0, 1.0, 1.0)

    def tokenize(self, prompt: str | Sequence[int]) -> list[int]:
        if self.tokenize_error is not None:
            raise self.tokenize_error
        return [1] * len(prompt)

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]]) -> str:
        return "".join(m["content"] for m in messages) or "."

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        return ["x" for _ in token_ids]

    async def shutdown(self) -> None:
        return None
