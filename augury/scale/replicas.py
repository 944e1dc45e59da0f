"""The classes Ray Serve runs as replicas: one LLM engine, or one predictive model.

They are plain classes; app.py turns them into deployments. Each replica reports its load to
the board (load.py) and counts the calls it serves, so the ingress can show per-replica load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from augury.llm.async_engine import AsyncEngine
from augury.llm.engine import EngineConfig, LLMEngine
from augury.llm.outputs import EngineStats, RequestOutput
from augury.llm.sampling_params import SamplingParams
from augury.models.tokenizer import Tokenizer
from augury.predict.errors import ModelNotReady
from augury.predict.pipeline import InferRequest, InferResult
from augury.predict.repository import ModelRepository, ModelVersion
from augury.scale.load import ReplicaLoad, ensure_board
from augury.server.engine_client import LocalEngineClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenizerParts:
    """What rebuilds a Tokenizer in another process (its constructor's arguments; the
    `tokenizers` backend pickles, the compiled chat template does not)."""

    backend: Any
    bos_token: str | None
    eos_token: str | None
    unk_token: str | None
    pad_token: str | None
    chat_template: str | None

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> TokenizerParts:
        t = tokenizer
        return cls(t.backend, t.bos_token, t.eos_token, t.unk_token, t.pad_token, t.chat_template)

    def build(self) -> Tokenizer:
        return Tokenizer(
            self.backend,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            unk_token=self.unk_token,
            pad_token=self.pad_token,
            chat_template=self.chat_template,
        )


@dataclass(frozen=True)
class EngineInfo:
    """What the ingress needs to serve an LLM deployment without loading the model."""

    model_id: str
    max_model_len: int
    vocab_size: int
    tokenizer: TokenizerParts
    stats: EngineStats


class Reporter:
    """Counts a replica's calls and pushes its load to the board every `interval_s`."""

    def __init__(
        self, app_name: str, interval_s: float, engine_stats: Callable[[], EngineStats | None]
    ) -> None:
        context = serve.get_replica_context()
        self.deployment = context.deployment
        self.replica = context.replica_id.unique_id
        self.actor_name = ray.get_runtime_context().get_actor_name() or ""
        self.ongoing = 0
        self.requests_total = 0
        self._engine_stats = engine_stats
        self._interval_s = interval_s
        self._board = ensure_board(app_name)
        self._task = asyncio.get_running_loop().create_task(self._report_forever())

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Count one call while it runs."""
        self.ongoing += 1
        self.requests_total += 1
        try:
            yield
        finally:
            self.ongoing -= 1

    def load(self) -> ReplicaLoad:
        return ReplicaLoad(
            deployment=self.deployment,
            replica=self.replica,
            actor_name=self.actor_name,
            ongoing=self.ongoing,
            requests_total=self.requests_total,
            engine=self._engine_stats(),
        )

    async def _report_forever(self) -> None:
        while True:
            try:
                self._board.report.remote(self.load())
            except Exception:  # the board is gone (shutdown): stop quietly
                log.warning("load board unreachable; replica %s stops reporting", self.replica)
                return
            await asyncio.sleep(self._interval_s)

    def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(Exception):
            self._board.forget.remote(self.deployment, self.replica)


class LLMReplica:
    """An LLM engine (its own step loop and KV cache) serving one replica's share of requests."""

    # Serve awaits async constructors; mypy only knows synchronous ones.
    async def __init__(  # type: ignore[misc]
        self, engine: EngineConfig, app_name: str, report_interval_s: float
    ) -> None:
        # Built in the thread that steps it (see AsyncEngine.load); to_thread only waits.
        self._engine = await asyncio.to_thread(
            AsyncEngine.load, lambda: LLMEngine.from_config(engine)
        )
        llm = self._engine.engine
        self._client = LocalEngineClient(self._engine)
        self._tokenizer = TokenizerParts.of(llm.tokenizer)
        self._vocab_size = llm.model.cfg.vocab_size
        self._reporter = Reporter(app_name, report_interval_s, self._engine.stats)

    async def generate(
        self, prompt: str | Sequence[int], params: SamplingParams, request_id: str, priority: int
    ) -> AsyncGenerator[RequestOutput]:
        """The engine's deltas for one request; cancelling the call aborts the request."""
        with self._reporter.call():
            stream = self._client.generate(prompt, params, request_id, priority)
            async with contextlib.aclosing(stream):
                async for out in stream:
                    yield out

    def info(self) -> EngineInfo:
        return EngineInfo(
            self._client.model_id,
            self._client.max_model_len,
            self._vocab_size,
            self._tokenizer,
            self.stats(),
        )

    def stats(self) -> EngineStats:
        return self._engine.stats()

    def check_health(self) -> None:
        """Called by Serve: a replica whose step loop died is replaced."""
        if not self._engine.running:
            raise RuntimeError("the engine's step loop is not running")

    async def __del__(self) -> None:
        self._reporter.stop()
        await asyncio.to_thread(self._engine.shutdown)


class PredictReplica:
    """One predictive model: runs batches the ingress's dynamic batcher formed."""

    async def __init__(  # type: ignore[misc]
        self, root: str, name: str, app_name: str, report_interval_s: float
    ) -> None:
        self._name = name
        self._repository = ModelRepository(root, poll_interval_s=None)
        self._model: ModelVersion = await self._repository.load(name)
        self._reporter = Reporter(app_name, report_interval_s, lambda: None)

    async def execute(
        self, version: int, requests: Sequence[InferRequest]
    ) -> list[InferResult | Exception]:
        """One result or error per request, in order, from the model's `version` (a newer one
        than this replica serves is loaded first)."""
        with self._reporter.call():
            if version != self._model.version:
                self._model = await self._repository.load(self._name)
            if version != self._model.version:
                error = ModelNotReady(
                    f"model {self._name!r} version {version} is not on this replica's disk "
                    f"(it has {self._model.version}); sync the model repository across nodes"
                )
                return [error] * len(requests)
            return await asyncio.to_thread(self._model.pipeline.execute, list(requests))

    def metadata(self) -> Mapping[str, int]:
        return {"version": self._model.version}

    async def __del__(self) -> None:
        self._reporter.stop()
        await self._repository.stop()
