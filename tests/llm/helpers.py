"""Small drivers shared by the engine tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from augury.llm.engine import LLMEngine
from augury.llm.outputs import TokenLogprob
from augury.llm.sampling_params import SamplingParams


@dataclass
class Sample:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None


def run_all(
    engine: LLMEngine,
    prompts: Sequence[str | Sequence[int]],
    params: SamplingParams | Sequence[SamplingParams],
    max_steps: int = 10_000,
) -> list[list[Sample]]:
    """Submit every prompt at once and step until all finish; samples per prompt, by index."""
    plist = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
    results: dict[str, dict[int, Sample]] = {}
    ids = []
    for i, (prompt, p) in enumerate(zip(prompts, plist, strict=True)):
        rid = f"t{i}-{id(prompt)}"
        engine.add_request(rid, prompt, p)
        ids.append(rid)
        results[rid] = {}
    for _ in range(max_steps):
        if not engine.has_unfinished():
            break
        for out in engine.step():
            for d in out.outputs:
                s = results[out.request_id].setdefault(d.index, Sample())
                s.text += d.text
                s.token_ids += d.token_ids
                s.logprobs += d.logprobs or []
                s.finish_reason = d.finish_reason
                s.stop_reason = d.stop_reason
    else:
        raise AssertionError(f"engine did not finish within {max_steps} steps")
    return [[results[r][k] for k in sorted(results[r])] for r in ids]
