from __future__ import annotations

import pytest
import torch

from augury.llm.kv_cache import BlockCopy, BlockManager, bytes_per_block, num_blocks_for_budget
from augury.models.config import LlamaConfig


def test_reserve_grows_tables_lazily_and_release_returns_everything() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    table: list[int] = []
    assert bm.blocks_needed(table, 0, 5) == 2
    assert bm.reserve(table, 0, 5) == []
    assert len(table) == 2 and bm.num_free == 6
    bm.reserve(table, 5, 3)  # 8 tokens: still two blocks (waste only in the last one)
    assert len(table) == 2
    bm.reserve(table, 8, 1)
    assert len(table) == 3
    bm.release(table)
    assert table == [] and bm.num_free == 8


def test_fork_shares_blocks_and_copies_on_write() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    parent: list[int] = []
    bm.reserve(parent, 0, 6)  # blocks: full + half-full
    child = bm.fork(parent)
    assert child == parent and bm.num_used == 2
    assert all(bm.ref_count(b) == 2 for b in parent)
    copies = bm.reserve(child, 6, 1)  # child writes into the shared half-full block
    assert copies == [BlockCopy(parent[1], child[1])]
    assert child[0] == parent[0] and child[1] != parent[1]
    assert bm.ref_count(parent[1]) == 1
    assert bm.reserve(parent, 6, 1) == []  # parent now owns its block alone: no copy
    bm.release(child)
    bm.release(parent)
    assert bm.num_free == 8


def test_cannot_reserve_beyond_pool() -> None:
    bm = BlockManager(num_blocks=2, block_size=4)
    t: list[int] = []
    assert not bm.can_reserve(t, 0, 9)
    with pytest.raises(RuntimeError):
        bm.reserve(t, 0, 9)


def test_budget_arithmetic() -> None:
    cfg = LlamaConfig(
        vocab_size=10,
        hidden_size=576,
        intermediate_size=8,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        max_position_embeddings=64,
    )
    # 2 (k, v) x 30 layers x 16 tokens x 3 heads x 64 dims x 2 bytes
    assert bytes_per_block(cfg, 16, torch.bfloat16) == 2 * 30 * 16 * 3 * 64 * 2
    assert num_blocks_for_budget(cfg, 16, torch.bfloat16, 1 << 30) == (1 << 30) // (
        2 * 30 * 16 * 3 * 64 * 2
    )
    with pytest.raises(ValueError, match="at least 2 are needed"):
        num_blocks_for_budget(cfg, 16, torch.bfloat16, 1000)
