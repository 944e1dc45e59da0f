"""RayEngineClient: the server's EngineClient over an LLM deployment's handle.

The ingress keeps the tokenizer (tokenize, chat template, token texts answer locally) and
forwards each generation as one streaming call that Ray routes to a replica (the replica
with fewer ongoing requests of two sampled, by default). When a replica dies, its in-flight
requests fail at once with a 503 naming the failure (retryable; never a hang), and Ray routes
new requests to the surviving or replacement replicas.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from functools import lru_cache
from typing import Any, cast

from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from augury.llm.outputs import EngineStats, RequestOutput
from augury.llm.sampling_params import SamplingParams
from augury.scale.errors import REPLICA_FAILURES, reason, unwrap
from augury.scale.observe import LoadView
from augury.scale.replicas import EngineInfo
from augury.server.errors import APIError

RETRY_AFTER_S = 1


def replica_failed(model_id: str, exc: BaseException) -> APIError:
    """The error of a request whose replica died or became unreachable under it."""
    return APIError(
        503,
        f"the replica serving model {model_id!r} failed during this request "
        f"({reason(exc)}); Ray is replacing it, retry the request",
        code="replica_failed",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class RayEngineClient:
    """An LLM deployment seen through the EngineClient protocol (see module docstring)."""

    def __init__(
        self, handle: DeploymentHandle[Any], deployment: str, info: EngineInfo, view: LoadView
    ) -> None:
        self._handle = handle
        self._stream = handle.options(stream=True)
        self._deployment = deployment
        self._info = info
        self._tokenizer = info.tokenizer.build()
        self._view = view
        self._calls: dict[str, DeploymentResponseGenerator[Any]] = {}
        self._token_text = lru_cache(maxsize=65536)(self._decode_one)

    @classmethod
    async def connect(
        cls, handle: DeploymentHandle[Any], deployment: str, view: LoadView
    ) -> RayEngineClient:
        """Ask one replica for the model's name, context length and tokenizer."""
        info: EngineInfo = await handle.info.remote()
        return cls(handle, deployment, info, view)

    @property
    def model_id(self) -> str:
        return self._info.model_id

    @property
    def max_model_len(self) -> int:
        return self._info.max_model_len

    def generate(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams,
        request_id: str | None = None,
        priority: int = 0,
    ) -> AsyncGenerator[RequestOutput]:
        return self._generate(prompt, params, request_id or f"ray-{uuid.uuid4().hex}", priority)

    async def _generate(
        self, prompt: str | Sequence[int], params: SamplingParams, request_id: str, priority: int
    ) -> AsyncGenerator[RequestOutput]:
        if not isinstance(prompt, str):
            prompt = list(prompt)
        call = cast(
            DeploymentResponseGenerator[Any],
            self._stream.generate.remote(prompt, params, request_id, priority),
        )
        self._calls[request_id] = call
        finished = False
        try:
            while not finished:
                try:
                    out: RequestOutput = await call.__anext__()
                except StopAsyncIteration:
                    return
                except RayTaskError as exc:
                    raise unwrap(exc) from None
                except REPLICA_FAILURES as exc:
                    raise replica_failed(self.model_id, exc) from None
                finished = out.finished
                yield out
        finally:
            self._calls.pop(request_id, None)
            if not finished:
                call.cancel()  # the replica's generator closes, which aborts the request

    def abort(self, request_id: str) -> None:
        call = self._calls.get(request_id)
        if call is not None:
            call.cancel()

    def stats(self) -> EngineStats:
        """The deployment's summed figures from the latest replica reports."""
        return self._view.engine_stats(self._deployment) or self._info.stats

    def tokenize(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            ids = self._tokenizer.encode(prompt)
        else:
            ids = [int(t) for t in prompt]
            vocab = self._info.vocab_size
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise ValueError(
                    f"prompt token id {bad[0]} is outside the vocabulary (0..{vocab - 1})"
                )
        if not ids:
            raise ValueError("prompt is empty: give at least one token")
        return ids

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]]) -> str:
        return self._tokenizer.apply_chat_template(messages)

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        return [self._token_text(t) for t in token_ids]

    def _decode_one(self, token_id: int) -> str:
        return self._tokenizer.decode([token_id], skip_special_tokens=False)

    async def shutdown(self) -> None:
        """Cancel the calls still streaming (the replicas belong to Serve)."""
        for call in list(self._calls.values()):
            call.cancel()
        self._calls.clear()
