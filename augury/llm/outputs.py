"""What the engine hands back: per-step deltas for streaming, and stats."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenLogprob:
    """The chosen token's log-probability and the most likely alternatives at that step."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)
    """(token id, logprob) of the top-N tokens, most likely first."""


@dataclass
class CompletionDelta:
    """New output of one sample since the previous delta."""

    index: int
    """Which of the request's n samples."""
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    """'stop' (EOS, stop string or stop token), 'length' (max_tokens/context), 'abort', 'error'."""
    stop_reason: str | int | None = None
    """The stop string or token id that ended the sample, when one did."""


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Prompt tokens whose keys/values came from the prefix cache."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class RequestOutput:
    """One step's news for one request: a delta per sample that advanced."""

    request_id: str
    outputs: list[CompletionDelta]
    finished: bool
    usage: Usage
    error: str | None = None
    """Set when the engine failed the request (the deltas then carry finish_reason 'error')."""


@dataclass
class Completion:
    """A finished sample with everything accumulated."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None
    stop_reason: str | int | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclass
class GenerationResult:
    """A finished request, as the offline `LLM.generate` returns it."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    completions: list[Completion]
    usage: Usage

    @property
    def text(self) -> str:
        return self.completions[0].text


@dataclass
class StepTiming:
    """Where one engine step's time went, in milliseconds."""

    schedule_ms: float = 0.0
    model_ms: float = 0.0
    """Building the batch tensors and the forward pass (including the LM head)."""
    sample_ms: float = 0.0
    update_ms: float = 0.0
    """Appending tokens, detokenizing, stop checks and output deltas."""

    @property
    def total_ms(self) -> float:
        return self.schedule_ms + self.model_ms + self.sample_ms + self.update_ms

    @property
    def bookkeeping_ms(self) -> float:
        """Everything that is not the model or sampling."""
        return self.schedule_ms + self.update_ms


@dataclass
class EngineStats:
    """Live figures of an engine, cheap to read between steps."""

    running: int
    waiting: int
    kv_blocks_used: int
    kv_blocks_total: int
    block_size: int
    prompt_tokens_total: int
    generation_tokens_total: int
    steps_total: int
    preemptions_total: int
    last_step_ms: float
    last_model_ms: float
    """Of the last step, the time spent building the batch and in the forward pass."""
    last_timing: StepTiming = field(default_factory=StepTiming)
    spec_proposed_tokens: int = 0
    """Draft tokens proposed by speculative decoding, and how many the target accepted."""
    spec_accepted_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0

    @property
    def kv_usage(self) -> float:
        return self.kv_blocks_used / self.kv_blocks_total if self.kv_blocks_total else 0.0
