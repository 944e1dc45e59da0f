"""The one interface the HTTP layer uses to reach an engine.

Handlers only see `EngineClient`; the local `AsyncEngine` is one implementation, and predictive
models, batch jobs or remote replicas can be others.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from functools import lru_cache
from typing import Protocol, cast, runtime_checkable

from augury.llm.async_engine import AsyncEngine
from augury.llm.engine import EngineConfig, LLMEngine
from augury.llm.outputs import EngineStats, RequestOutput
from augury.llm.sampling_params import SamplingParams


@runtime_checkable
class EngineClient(Protocol):
    """What the server needs from a generation engine."""

    @property
    def model_id(self) -> str:
        """The name clients put in `model`."""
        ...

    @property
    def max_model_len(self) -> int:
        """Longest prompt + output, in tokens."""
        ...

    def generate(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams,
        request_id: str | None = None,
        priority: int = 0,
    ) -> AsyncGenerator[RequestOutput]:
        """Stream deltas; raises ValueError (bad input) or QueueFullError on first iteration.
        Leaving the iterator early aborts the request."""
        ...

    def abort(self, request_id: str) -> None: ...

    def stats(self) -> EngineStats: ...

    def tokenize(self, prompt: str | Sequence[int]) -> list[int]:
        """Prompt token ids; ValueError for an empty prompt or ids outside the vocabulary."""
        ...

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The model's prompt for a conversation; ValueError for malformed messages."""
        ...

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        """The text of each token on its own (for logprobs)."""
        ...

    async def shutdown(self) -> None: ...


class LocalEngineClient:
    """An `AsyncEngine` in this process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._token_text = lru_cache(maxsize=65536)(self._decode_one)

    @property
    def model_id(self) -> str:
        return self._engine.model_id

    @property
    def max_model_len(self) -> int:
        return self._engine.max_model_len

    def generate(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams,
        request_id: str | None = None,
        priority: int = 0,
    ) -> AsyncGenerator[RequestOutput]:
        # AsyncEngine.generate is an async generator function: closing it aborts the request.
        stream = self._engine.generate(prompt, params, request_id, priority)
        return cast(AsyncGenerator[RequestOutput], stream)

    def abort(self, request_id: str) -> None:
        self._engine.abort(request_id)

    def stats(self) -> EngineStats:
        return self._engine.stats()

    def tokenize(self, prompt: str | Sequence[int]) -> list[int]:
        return self._engine.tokenize(prompt)

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]]) -> str:
        return self._engine.engine.tokenizer.apply_chat_template(messages)

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        return [self._token_text(t) for t in token_ids]

    def _decode_one(self, token_id: int) -> str:
        return self._engine.engine.tokenizer.decode([token_id], skip_special_tokens=False)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self._engine.shutdown)


def load_local_engine(config: EngineConfig) -> LocalEngineClient:
    """Load the configured model (seconds) and start its step loop, both in the engine's own
    thread (see AsyncEngine.load)."""
    return LocalEngineClient(AsyncEngine.load(lambda: LLMEngine.from_config(config)))
