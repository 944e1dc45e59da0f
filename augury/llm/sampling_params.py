"""Sampling parameters of one generation request, validated on construction."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAX_LOGPROBS = 20
"""Most top alternatives a request may ask for per token (OpenAI's own limit)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. Field names follow the OpenAI/vLLM APIs."""

    n: int = 1
    """Independent samples of the same prompt; they share the prompt's cache blocks."""
    max_tokens: int = 16
    """Most tokens to generate per sample."""
    min_tokens: int = 0
    """End-of-sequence and stop tokens are suppressed until this many tokens are generated."""
    temperature: float = 1.0
    """0 means greedy; higher flattens the distribution."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 (or -1) keeps all."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability adds up to top_p."""
    min_p: float = 0.0
    """Drop tokens less likely than min_p times the most likely one."""
    repetition_penalty: float = 1.0
    """Divide positive (multiply negative) logits of tokens already seen (>1 penalizes)."""
    presence_penalty: float = 0.0
    """Subtracted once from the logit of every token already generated."""
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit once per time it was generated."""
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    """Added to the logits of the given token ids (-100 bans, +100 forces)."""
    seed: int | None = None
    """Per-request seed: the same seed and prompt give the same output whatever else runs."""
    stop: Sequence[str] = ()
    """Strings that end the generation; the returned text stops right before them."""
    stop_token_ids: Sequence[int] = ()
    """Token ids that end the generation (in addition to the model's end-of-sequence tokens)."""
    ignore_eos: bool = False
    """Keep going past end-of-sequence tokens (benchmarks)."""
    logprobs: int | None = None
    """Return the sampled token's log-probability and this many top alternatives (0..20)."""
    skip_special_tokens: bool = True
    """Leave special tokens out of the returned text."""

    def __post_init__(self) -> None:
        _check_int("n", self.n, 1, 128)
        _check_int("max_tokens", self.max_tokens, 1, 1 << 20)
        _check_int("min_tokens", self.min_tokens, 0, self.max_tokens)
        _check_float("temperature", self.temperature, 0.0, 100.0)
        if self.top_k == -1:
            object.__setattr__(self, "top_k", 0)
        _check_int("top_k", self.top_k, 0, 1 << 24)
        _check_float("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _check_float("min_p", self.min_p, 0.0, 1.0)
        _check_float("repetition_penalty", self.repetition_penalty, 0.0, 100.0, low_open=True)
        _check_float("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_float("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        for tok, bias in self.logit_bias.items():
            if not isinstance(tok, int) or tok < 0:
                raise ValueError(f"logit_bias: token id {tok!r} must be a non-negative integer")
            _check_float(f"logit_bias[{tok}]", bias, -100.0, 100.0)
        if self.seed is not None:
            _check_int("seed", self.seed, -(1 << 63), (1 << 63) - 1)
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop: each stop string must be a non-empty string, got {s!r}")
        for t in self.stop_token_ids:
            if not isinstance(t, int) or t < 0:
                raise ValueError(f"stop_token_ids: {t!r} must be a non-negative integer")
        if self.logprobs is not None:
            _check_int("logprobs", self.logprobs, 0, MAX_LOGPROBS)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )

    def check_vocab(self, vocab_size: int) -> None:
        """Token ids named by the parameters must exist in the model's vocabulary."""
        for name, ids in (("logit_bias", self.logit_bias), ("stop_token_ids", self.stop_token_ids)):
            for t in ids:
                if t >= vocab_size:
                    raise ValueError(
                        f"{name}: token id {t} is outside the vocabulary (0..{vocab_size - 1})"
                    )


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _check_float(name: str, value: object, low: float, high: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (low < v if low_open else low <= v) and v <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value}")
