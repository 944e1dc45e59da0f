"""Model quality measures that need no reference implementation: perplexity over a fixed text.

Used to compare weight formats (float32, bfloat16, INT8, INT4) of one model on the same tokens:
bench/bench_quant.py reports them, tests/models/test_quant.py bounds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from augury.llm.batch import SeqWork, build_step_batch
from augury.llm.kv_cache import allocate_kv_caches
from augury.models.llama import LlamaModel


def prefill_logits(
    model: LlamaModel, chunks: Sequence[Sequence[int]], block_size: int = 16
) -> torch.Tensor:
    """(B, T, vocab) float32 logits of `model` at every position of B chunks of T tokens each,
    in one prefill step (each chunk its own sequence in a fresh paged cache)."""
    t = len(chunks[0])
    if any(len(c) != t for c in chunks):
        raise ValueError("prefill_logits needs chunks of one length")
    per_seq = -(-t // block_size)
    caches = allocate_kv_caches(
        model.cfg, per_seq * len(chunks), block_size, model.dtype, model.device
    )
    works = [
        SeqWork(list(c), 0, list(range(i * per_seq, (i + 1) * per_seq)), num_logits=t)
        for i, c in enumerate(chunks)
    ]
    batch = build_step_batch(works, [], block_size, model.device)
    with torch.inference_mode():
        hidden = model(batch.input_ids, batch.positions, caches, batch.meta)  # (B * T, hidden)
        return model.compute_logits(hidden).view(len(chunks), t, -1)


def token_logprobs(model: LlamaModel, token_ids: Sequence[int], window: int = 512) -> torch.Tensor:
    """log p(token[i] | the tokens before it in its window) for every token but each window's
    first: the text is cut into independent windows of `window` tokens (float32, 1-D)."""
    if window < 2:
        raise ValueError(f"window must be at least 2 tokens, got {window}")
    parts = []
    for start in range(0, len(token_ids) - 1, window):
        chunk = list(token_ids[start : start + window])
        if len(chunk) < 2:
            break
        logits = prefill_logits(model, [chunk])[0, :-1]  # (n - 1, vocab): predicts chunk[1:]
        targets = torch.tensor(chunk[1:], device=logits.device)
        logp = F.log_softmax(logits, dim=-1)
        parts.append(logp.gather(1, targets[:, None])[:, 0].cpu())
    if not parts:
        raise ValueError("perplexity needs at least 2 tokens")
    return torch.cat(parts)


def perplexity(model: LlamaModel, token_ids: Sequence[int], window: int = 512) -> float:
    """exp(mean negative log-likelihood) of `token_ids` under `model` (see token_logprobs)."""
    return math.exp(-token_logprobs(model, token_ids, window).mean().item())
