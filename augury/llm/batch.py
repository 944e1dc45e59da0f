"""Flat batch tensors for one model step, built from per-sequence work items.

This is the only place that turns scheduler decisions (which sequence runs how many tokens at
which positions, in which cache blocks) into the tensors the model reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from augury.models.layers import AttentionMetadata, PrefillSpan


@dataclass
class SeqWork:
    """One sequence's share of a step: `tokens` at positions start_pos .. start_pos + len - 1."""

    tokens: Sequence[int]
    start_pos: int
    block_table: Sequence[int]
    num_logits: int = 1
    """Positions at the end of the span that need logits (1 + drafts when verifying a draft)."""


@dataclass
class StepBatch:
    input_ids: torch.Tensor
    """(T,) int64"""
    positions: torch.Tensor
    """(T,) int64"""
    meta: AttentionMetadata
    logits_index: torch.Tensor
    """(N,) int64: flat indices needing logits: each sequence's last `num_logits` tokens, in the
    order work was given."""


def build_step_batch(
    prefills: Sequence[SeqWork],
    decodes: Sequence[SeqWork],
    block_size: int,
    device: torch.device,
) -> StepBatch:
    """Lay out prefill chunks first, then the decode rows.

    `logits_index` follows the order prefills + decodes: `num_logits` entries per prefill
    sequence, one per token for a decoding sequence.
    """
    ids: list[int] = []
    pos: list[int] = []
    slots: list[int] = []
    spans: list[PrefillSpan] = []
    last: list[int] = []
    for w in prefills:
        start = len(ids)
        _append(w, block_size, ids, pos, slots)
        ctx = w.start_pos + len(w.tokens)
        table = torch.tensor(w.block_table[: -(-ctx // block_size)], dtype=torch.int64)
        spans.append(PrefillSpan(start, len(ids), ctx, table.to(device)))
        last.extend(range(len(ids) - w.num_logits, len(ids)))
    # Decode rows: one per token. A sequence verifying a speculative draft has several tokens;
    # each is its own row seeing the context up to itself, exactly as in successive decode steps.
    decode_start = len(ids)
    rows: list[tuple[Sequence[int], int]] = []  # (block table, context length)
    for w in decodes:
        _append(w, block_size, ids, pos, slots)
        rows.extend((w.block_table, w.start_pos + j + 1) for j in range(len(w.tokens)))
        last.extend(range(len(ids) - len(w.tokens), len(ids)))
    b = len(rows)
    max_blocks = max((-(-ctx // block_size) for _, ctx in rows), default=0)
    tables = torch.zeros((b, max_blocks), dtype=torch.int64)
    ctx_lens = torch.empty(b, dtype=torch.int64)
    for i, (row_table, ctx) in enumerate(rows):
        n = -(-ctx // block_size)
        tables[i, :n] = torch.tensor(row_table[:n], dtype=torch.int64)
        ctx_lens[i] = ctx
    key_pos = torch.arange(max_blocks * block_size)
    mask = torch.zeros((b, 1, 1, max_blocks * block_size), dtype=torch.float32)
    hidden = (key_pos[None, :] >= ctx_lens[:, None]).view(b, 1, 1, max_blocks * block_size)
    mask.masked_fill_(hidden, float("-inf"))

    meta = AttentionMetadata(
        slot_mapping=torch.tensor(slots, dtype=torch.int64, device=device),
        prefills=spans,
        decode_start=decode_start,
        decode_block_tables=tables.to(device),
        decode_mask=mask.to(device),
        decode_context_lens=ctx_lens.to(device),
    )
    return StepBatch(
        input_ids=torch.tensor(ids, dtype=torch.int64, device=device),
        positions=torch.tensor(pos, dtype=torch.int64, device=device),
        meta=meta,
        logits_index=torch.tensor(last, dtype=torch.int64, device=device),
    )


def _append(w: SeqWork, block_size: int, ids: list[int], pos: list[int], slots: list[int]) -> None:
    n = len(w.tokens)
    if n == 0:
        raise ValueError("a sequence's share of a step has no tokens")
    needed = -(-(w.start_pos + n) // block_size)
    if len(w.block_table) < needed:
        raise ValueError(
            f"block table has {len(w.block_table)} blocks; positions up to "
            f"{w.start_pos + n - 1} need {needed}"
        )
    ids.extend(w.tokens)
    for p in range(w.start_pos, w.start_pos + n):
        pos.append(p)
        slots.append(w.block_table[p // block_size] * block_size + p % block_size)
