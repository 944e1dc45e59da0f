"""Logits -> tokens for a whole batch at once.

Every control is a tensor operation over the batch; Python loops run only over rows that need
something special (logit bias, per-request generators). Order of processing, as in vLLM:
logit bias, min_tokens, penalties, then greedy argmax or temperature -> top-k -> top-p -> min-p
-> draw. Log-probabilities are those of the model's raw distribution (log-softmax of the logits).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

import torch

from augury.llm.outputs import TokenLogprob
from augury.llm.sampling_params import SamplingParams


@dataclass
class SampleRow:
    """What the sampler needs to know of one row: parameters, history and random source."""

    params: SamplingParams
    prompt_ids: Seq[int]
    output_ids: Seq[int]
    generator: torch.Generator | None


@dataclass
class SampleResult:
    token_ids: list[int]
    logprobs: list[TokenLogprob | None]


class Sampler:
    def __init__(self, vocab_size: int, eos_token_ids: Seq[int]) -> None:
        self.vocab_size = vocab_size
        self.eos = torch.tensor(sorted(set(eos_token_ids)), dtype=torch.int64)

    def __call__(self, logits: torch.Tensor, rows: Seq[SampleRow]) -> SampleResult:
        """(B, V) float32 logits, one SampleRow per row -> one token (and logprobs) per row."""
        raw = logits[:, : self.vocab_size].float()
        processed = self.process(raw, rows)
        greedy = torch.tensor([r.params.greedy for r in rows])
        tokens = processed.argmax(dim=-1)
        if not bool(greedy.all()):
            sampled = self._draw(self.probabilities(processed, rows), rows)
            tokens = torch.where(greedy, tokens, sampled)
        return SampleResult(tokens.tolist(), self._logprobs(raw, tokens, rows))

    def process(self, logits: torch.Tensor, rows: Seq[SampleRow]) -> torch.Tensor:
        """A copy of the logits with bias, min_tokens bans and penalties applied."""
        logits = logits[:, : self.vocab_size].float().clone()
        self._apply_bias_and_min_tokens(logits, rows)
        if any(r.params.has_penalties for r in rows):
            self._apply_penalties(logits, rows)
        return logits

    def _apply_bias_and_min_tokens(self, logits: torch.Tensor, rows: Seq[SampleRow]) -> None:
        for i, r in enumerate(rows):
            p = r.params
            if p.logit_bias:
                ids = torch.tensor(list(p.logit_bias.keys()), dtype=torch.int64)
                logits[i, ids] += torch.tensor(list(p.logit_bias.values()), dtype=logits.dtype)
            if len(r.output_ids) < p.min_tokens:
                banned = list(p.stop_token_ids) + ([] if p.ignore_eos else self.eos.tolist())
                if banned:
                    logits[i, torch.tensor(banned, dtype=torch.int64)] = float("-inf")

    def _apply_penalties(self, logits: torch.Tensor, rows: Seq[SampleRow]) -> None:
        b, v = logits.shape
        counts = torch.zeros((b, v), dtype=torch.float32)  # generated-token counts
        seen = torch.zeros((b, v), dtype=torch.bool)  # in prompt or output
        for i, r in enumerate(rows):
            if not r.params.has_penalties:
                continue
            out = torch.tensor(r.output_ids, dtype=torch.int64)
            counts[i].index_add_(0, out, torch.ones(len(out)))
            seen[i, torch.tensor(list(r.prompt_ids), dtype=torch.int64)] = True
            seen[i, out] = True
        freq = torch.tensor([r.params.frequency_penalty for r in rows]).unsqueeze(1)
        pres = torch.tensor([r.params.presence_penalty for r in rows]).unsqueeze(1)
        rep = torch.tensor([r.params.repetition_penalty for r in rows]).unsqueeze(1)
        logits -= freq * counts + pres * (counts > 0).float()
        penalized = torch.where(logits > 0, logits / rep, logits * rep)
        logits.copy_(torch.where(seen, penalized, logits))

    def probabilities(self, logits: torch.Tensor, rows: Seq[SampleRow]) -> torch.Tensor:
        """Processed logits -> the distribution each row draws from (temperature, top-k, top-p,
        min-p applied; unnormalized after the cuts, which the draw does not mind)."""
        temp = torch.tensor([r.params.temperature or 1.0 for r in rows]).unsqueeze(1)
        logits = logits / temp
        top_k = [r.params.top_k for r in rows]
        if any(top_k):
            k = torch.tensor([t if t > 0 else self.vocab_size for t in top_k])
            k = k.clamp(max=logits.shape[1])
            kth = torch.topk(logits, int(k.max()), dim=-1).values  # (B, max_k)
            threshold = kth.gather(1, (k - 1).unsqueeze(1))
            logits = logits.masked_fill(logits < threshold, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        top_p = torch.tensor([r.params.top_p for r in rows])
        if bool((top_p < 1.0).any()):
            sorted_p, order = probs.sort(dim=-1, descending=True)
            # Drop a token when the tokens ranked above it already reach top_p.
            drop_sorted = (sorted_p.cumsum(dim=-1) - sorted_p) >= top_p.unsqueeze(1)
            # The top token always stays: a top_p below float32's range (5e-324, accepted as
            # > 0) rounds to 0 and would drop everything (NaN in speculative verification).
            drop_sorted[:, 0] = False
            drop = torch.zeros_like(drop_sorted).scatter_(1, order, drop_sorted)
            probs = probs.masked_fill(drop, 0.0)
        min_p = torch.tensor([r.params.min_p for r in rows])
        if bool((min_p > 0).any()):
            floor = probs.max(dim=-1, keepdim=True).values * min_p.unsqueeze(1)
            probs = probs.masked_fill(probs < floor, 0.0)
        return probs

    def _draw(self, probs: torch.Tensor, rows: Seq[SampleRow]) -> torch.Tensor:
        """One token per row from its (unnormalized) distribution, by inverse CDF: one uniform
        per row, in float64, against the running sum of the row. (An exponential race over the
        whole vocabulary had drawn 49,152 random numbers per row and step: ~30% of a 16-client
        decode step when requests carry seeds.)"""
        cdf = probs.double().cumsum(dim=-1)  # (B, V); zero-probability tokens add nothing
        u = torch.empty((len(rows), 1), dtype=torch.float64)
        shared = [i for i, r in enumerate(rows) if r.generator is None]
        if shared:
            u[shared] = torch.rand((len(shared), 1), dtype=torch.float64)
        for i, r in enumerate(rows):
            if r.generator is not None:
                u[i] = torch.rand(1, generator=r.generator, dtype=torch.float64)
        # u < 1, so target < the row's total: the first cdf entry above it is a token with
        # positive probability, picked with probability p / total.
        picked = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)
        return picked.clamp_(max=probs.shape[1] - 1)  # in range even for a NaN row

    def _logprobs(
        self, raw: torch.Tensor, tokens: torch.Tensor, rows: Seq[SampleRow]
    ) -> list[TokenLogprob | None]:
        want = [r.params.logprobs for r in rows]
        if all(w is None for w in want):
            return [None] * len(rows)
        logp = torch.log_softmax(raw, dim=-1)
        chosen = logp.gather(1, tokens.unsqueeze(1)).squeeze(1).tolist()
        n_top = max(w or 0 for w in want)
        top_v, top_i = torch.topk(logp, n_top, dim=-1) if n_top else (None, None)
        result: list[TokenLogprob | None] = []
        for i, w in enumerate(want):
            if w is None:
                result.append(None)
                continue
            top: list[tuple[int, float]] = []
            if w and top_v is not None and top_i is not None:
                top = list(zip(top_i[i, :w].tolist(), top_v[i, :w].tolist(), strict=True))
            result.append(TokenLogprob(int(tokens[i]), float(chosen[i]), top))
        return result
