"""The paged KV cache: preallocated tensors and the block manager that hands out their blocks.

Keys and values of each layer live in one tensor of shape
(num_kv_heads, num_blocks, block_size, head_dim). A sequence owns a list of block ids (its block
table); blocks are reference-counted so that the n samples of one prompt share the prompt's
blocks, with copy-on-write when a shared partially filled block is appended to.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from augury.models.config import LlamaConfig


def bytes_per_block(cfg: LlamaConfig, block_size: int, dtype: torch.dtype) -> int:
    """Cache bytes one block takes across all layers, keys and values."""
    elem = torch.empty(0, dtype=dtype).element_size()
    return 2 * cfg.num_layers * block_size * cfg.num_kv_heads * cfg.head_dim * elem


def num_blocks_for_budget(
    cfg: LlamaConfig, block_size: int, dtype: torch.dtype, budget_bytes: int
) -> int:
    n = budget_bytes // bytes_per_block(cfg, block_size, dtype)
    if n < 2:
        raise ValueError(
            f"kv cache memory of {budget_bytes} bytes holds {n} blocks of {block_size} tokens; "
            f"at least 2 are needed ({2 * bytes_per_block(cfg, block_size, dtype)} bytes)"
        )
    return int(n)


def allocate_kv_caches(
    cfg: LlamaConfig, num_blocks: int, block_size: int, dtype: torch.dtype, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    shape = (cfg.num_kv_heads, num_blocks, block_size, cfg.head_dim)
    return [
        (
            torch.zeros(shape, dtype=dtype, device=device),
            torch.zeros(shape, dtype=dtype, device=device),
        )
        for _ in range(cfg.num_layers)
    ]


@dataclass(frozen=True)
class BlockCopy:
    """Copy the contents of block `src` into block `dst` (all layers) before the step runs."""

    src: int
    dst: int


class BlockManager:
    """Free list and reference counts of cache blocks; block tables of sequences.

    Check/act pairs: `blocks_needed` tells what `reserve` will take, `can_reserve` whether that
    is free; `reserve` then cannot fail.

    Prefix caching: a full block is identified by a chained hash of its tokens and of every token
    before it (`block_hash`). `cache_full_blocks` registers a sequence's full blocks; `match`
    finds the longest run of registered blocks for a new prompt. Unreferenced registered blocks
    stay in an LRU list and are evicted only when a free block is needed. Full blocks are never
    written again, so a shared cached block is never modified.
    """

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = False) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(
                f"need num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}"
            )
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() gives low ids first
        self._refs = [0] * num_blocks
        self.prefix_caching = prefix_caching
        self._hash_of: dict[int, int] = {}  # block -> hash of its (full) contents
        self._block_of: dict[int, int] = {}  # hash -> block
        self._evictable: OrderedDict[int, None] = OrderedDict()  # cached, unreferenced; LRU first
        self.queried_tokens = 0
        self.hit_tokens = 0

    @property
    def num_free(self) -> int:
        """Blocks that can be handed out: never used, or cached and unreferenced."""
        return len(self._free) + len(self._evictable)

    @property
    def num_cached(self) -> int:
        return len(self._block_of)

    @property
    def num_used(self) -> int:
        """Blocks referenced by some sequence."""
        return self.num_blocks - self.num_free

    def ref_count(self, block: int) -> int:
        return self._refs[block]

    def blocks_for_tokens(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def blocks_needed(self, table: list[int], num_cached: int, num_new: int) -> int:
        """Blocks to take from the pool so that `num_new` tokens can follow `num_cached` ones."""
        need = self.blocks_for_tokens(num_cached + num_new) - len(table)
        # Appending into a shared, partially filled last block copies it first.
        if num_cached % self.block_size and table and self._refs[table[-1]] > 1:
            need += 1
        return max(need, 0)

    def can_reserve(self, table: list[int], num_cached: int, num_new: int) -> bool:
        return self.blocks_needed(table, num_cached, num_new) <= self.num_free

    def reserve(self, table: list[int], num_cached: int, num_new: int) -> list[BlockCopy]:
        """Grow `table` in place for `num_new` more tokens; returns copies to run first."""
        if not self.can_reserve(table, num_cached, num_new):
            raise RuntimeError("reserve() without enough free blocks (call can_reserve first)")
        copies: list[BlockCopy] = []
        if num_cached % self.block_size and table and self._refs[table[-1]] > 1:
            shared = table[-1]
            fresh = self._take()
            self._refs[shared] -= 1
            table[-1] = fresh
            copies.append(BlockCopy(shared, fresh))
        while len(table) < self.blocks_for_tokens(num_cached + num_new):
            table.append(self._take())
        return copies

    def fork(self, table: list[int]) -> list[int]:
        """A new block table sharing every block of `table`."""
        for b in table:
            self._refs[b] += 1
        return list(table)

    def release(self, table: list[int]) -> None:
        """Drop one reference to each block of `table` and empty it."""
        for b in reversed(table):
            self._refs[b] -= 1
            if self._refs[b] == 0:
                if b in self._hash_of:
                    self._evictable[b] = None  # most recently used at the end
                else:
                    self._free.append(b)
            elif self._refs[b] < 0:
                raise RuntimeError(f"block {b} released more often than it was taken")
        table.clear()

    def trim(self, table: list[int], num_tokens: int) -> None:
        """Give back the blocks past those `num_tokens` need (after rejected draft tokens)."""
        keep = self.blocks_for_tokens(num_tokens)
        if len(table) > keep:
            tail = table[keep:]
            del table[keep:]
            self.release(tail)

    # -- prefix caching --------------------------------------------------------------------------

    def match(self, tokens: Sequence[int]) -> tuple[list[int], list[int]]:
        """Take a reference to the longest run of cached full blocks that starts `tokens`.

        Returns (blocks, their hashes). At least the last token is left to compute, so that the
        request gets logits. Empty when prefix caching is off.
        """
        if not self.prefix_caching:
            return [], []
        usable = (len(tokens) - 1) // self.block_size
        blocks: list[int] = []
        hashes: list[int] = []
        parent: int | None = None
        for i in range(usable):
            parent = block_hash(parent, tokens[i * self.block_size : (i + 1) * self.block_size])
            b = self._block_of.get(parent)
            if b is None:
                break
            if self._refs[b] == 0:
                del self._evictable[b]
            self._refs[b] += 1
            blocks.append(b)
            hashes.append(parent)
        self.queried_tokens += len(tokens)
        self.hit_tokens += len(blocks) * self.block_size
        return blocks, hashes

    def cache_full_blocks(
        self, table: list[int], hashes: list[int], tokens: Sequence[int], num_computed: int
    ) -> None:
        """Register the blocks of `table` that `num_computed` tokens fill completely.

        `hashes` (one per registered block of this table, extended in place) carries the chain;
        `tokens` are the sequence's tokens from index len(hashes) * block_size on.
        """
        if not self.prefix_caching:
            return
        bs = self.block_size
        first = len(hashes)
        for i in range(first, num_computed // bs):
            parent = hashes[-1] if hashes else None
            h = block_hash(parent, tokens[(i - first) * bs : (i - first + 1) * bs])
            hashes.append(h)
            b = table[i]
            if h not in self._block_of and b not in self._hash_of:
                self._block_of[h] = b
                self._hash_of[b] = h

    def _take(self) -> int:
        if self._free:
            b = self._free.pop()
        else:  # evict the least recently used cached block
            b, _ = self._evictable.popitem(last=False)
            del self._block_of[self._hash_of.pop(b)]
        self._refs[b] = 1
        return b


def block_hash(parent: int | None, tokens: Sequence[int]) -> int:
    """Identity of a full block: its tokens and, through `parent`, every token before them."""
    return hash((parent, tuple(tokens)))
