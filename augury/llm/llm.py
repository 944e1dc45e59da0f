"""Offline generation: `LLM(model=...).generate(prompts, SamplingParams(...))`."""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence as Seq
from typing import Any

from augury.llm.engine import EngineConfig, LLMEngine
from augury.llm.outputs import Completion, GenerationResult, RequestOutput, Usage
from augury.llm.sampling_params import SamplingParams


class LLM:
    """A thin synchronous driver of LLMEngine: queue everything, step until done."""

    def __init__(self, model: str | None = None, **config: Any) -> None:
        self.engine = LLMEngine.from_config(EngineConfig(model=model, **config))

    @property
    def tokenizer(self):  # type: ignore[no-untyped-def]
        return self.engine.tokenizer

    def generate(
        self,
        prompts: str | Seq[int] | Seq[str | Seq[int]],
        params: SamplingParams | Seq[SamplingParams] | None = None,
    ) -> list[GenerationResult]:
        """Generate for every prompt (text or token ids); results come back in prompt order."""
        items: list[str | Seq[int]]
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            items = [prompts]  # type: ignore[list-item]
        else:
            items = list(prompts)  # type: ignore[arg-type]
        if params is None:
            params = SamplingParams()
        plist = [params] * len(items) if isinstance(params, SamplingParams) else list(params)
        if len(plist) != len(items):
            raise ValueError(f"got {len(plist)} SamplingParams for {len(items)} prompts")
        results: dict[str, GenerationResult] = {}
        order = []
        for i, (prompt, p) in enumerate(zip(items, plist, strict=True)):
            rid = f"offline-{id(self)}-{i}"
            ids = self.engine.add_request(rid, prompt, p)
            order.append(rid)
            results[rid] = GenerationResult(
                rid,
                prompt if isinstance(prompt, str) else None,
                ids,
                [Completion(k, "", [], None) for k in range(p.n)],
                Usage(len(ids), 0),
            )
        for out in self.stream_steps():
            _accumulate(results[out.request_id], out)
        return [results[rid] for rid in order]

    def stream_steps(self) -> Iterator[RequestOutput]:
        while self.engine.has_unfinished():
            yield from self.engine.step()


def _accumulate(result: GenerationResult, out: RequestOutput) -> None:
    for d in out.outputs:
        c = result.completions[d.index]
        c.text += d.text
        c.token_ids.extend(d.token_ids)
        if d.logprobs is not None:
            c.logprobs = (c.logprobs or []) + d.logprobs
        c.finish_reason = d.finish_reason
        c.stop_reason = d.stop_reason
    result.usage = out.usage
