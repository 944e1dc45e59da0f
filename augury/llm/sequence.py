"""The engine's record of one sample being generated (a request with n > 1 has n of them)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from augury.llm.detokenizer import IncrementalDetokenizer
from augury.llm.outputs import TokenLogprob
from augury.llm.sampling_params import SamplingParams


class SeqStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    seq_id: int
    request_id: str
    index: int
    """Position among the request's n samples."""
    prompt_ids: list[int]
    params: SamplingParams
    arrival: float
    detok: IncrementalDetokenizer
    priority: int = 0
    """Lower runs first (as in vLLM); ties go by arrival."""
    generator: torch.Generator | None = None
    output_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    num_computed: int = 0
    """Tokens whose keys/values are in the cache."""
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    """Prefix-cache hashes of the table's first full blocks (registered or matched)."""
    num_cached_prompt: int = 0
    """Prompt tokens whose keys/values came from the prefix cache at admission."""
    status: SeqStatus = SeqStatus.WAITING
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    draft: list[int] = field(default_factory=list)
    """Speculative tokens proposed for this step (verified by the target in the same pass)."""
    spec_hits: float = 0.0
    spec_trials: float = 0.0
    """Draft positions accepted, of those verified, recent ones weighted most (decayed per
    step): what DraftPolicy expects of this sequence's next draft."""
    pending_forks: int = 0
    """Samples still to split off this one when its prompt is done (n > 1)."""
    # Streaming cursors: what was already reported.
    sent_tokens: int = 0
    sent_logprobs: int = 0
    pending_text: str = ""

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    def token_slice(self, start: int, end: int) -> list[int]:
        """Tokens start..end-1 of prompt + output, without building the whole list."""
        p = len(self.prompt_ids)
        if start >= p:
            return self.output_ids[start - p : end - p]
        if end <= p:
            return self.prompt_ids[start:end]
        return self.prompt_ids[start:] + self.output_ids[: end - p]

    @property
    def num_uncomputed(self) -> int:
        return self.num_tokens - self.num_computed

    @property
    def in_prefill(self) -> bool:
        """True while more than one token awaits the cache (a prompt, or a recompute)."""
        return self.num_uncomputed > 1

    @property
    def finished(self) -> bool:
        return self.status is SeqStatus.FINISHED
