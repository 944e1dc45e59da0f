"""Automatic prefix caching: reuse, identical outputs, no writes to shared blocks, LRU eviction."""

from __future__ import annotations

from collections.abc import Callable

import torch

from augury.llm.engine import LLMEngine
from augury.llm.kv_cache import BlockManager, block_hash
from augury.llm.sampling_params import SamplingParams
from augury.models.tokenizer import Tokenizer
from tests.llm.helpers import run_all

SYSTEM = "You are a meticulous assistant. Answer briefly and precisely, citing facts. " * 4


def conversation(tokenizer: Tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    )


def test_outputs_identical_with_and_without_prefix_cache(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer
) -> None:
    prompts = [conversation(tokenizer, q) for q in ("Name a metal.", "Name a bird.", "Name a sea.")]
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
    cold = make_engine(enable_prefix_caching=False)
    expected = [run_all(cold, [p], params)[0][0].token_ids for p in prompts]
    warm = make_engine(enable_prefix_caching=True)
    got = [run_all(warm, [p], params)[0][0].token_ids for p in prompts]
    assert got == expected
    stats = warm.stats()
    assert stats.prefix_cache_hits > 0  # the shared system prompt was reused
    assert warm.blocks.num_used == 0  # cached blocks are evictable, not held


def test_second_turn_reuses_first_turn_blocks(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer
) -> None:
    engine = make_engine()
    first = conversation(tokenizer, "What is the capital of Italy?")
    ids = engine.tokenize_prompt(first)
    engine.add_request("t1", ids, SamplingParams(temperature=0.0, max_tokens=8))
    while engine.has_unfinished():
        engine.step()
    engine.add_request("t2", [*ids, 198, 28, 29], SamplingParams(temperature=0.0, max_tokens=4))
    out = []
    while engine.has_unfinished():
        out += engine.step()
    cached = out[-1].usage.cached_tokens
    assert cached == (len(ids) // 16) * 16  # every full block of the first turn
    assert cached >= len(ids) - 16


def test_shared_cached_blocks_are_never_written(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer
) -> None:
    engine = make_engine()
    prompt = conversation(tokenizer, "Count from one to ten.")
    run_all(engine, [prompt], SamplingParams(temperature=0.0, max_tokens=4))
    cached = sorted(engine.blocks._hash_of)
    assert cached
    snapshot = [(k[:, cached].clone(), v[:, cached].clone()) for k, v in engine.kv_caches]
    # Two requests share those blocks and generate past them (copy-on-write stays off them).
    run_all(engine, [prompt, prompt], SamplingParams(temperature=0.8, max_tokens=40, seed=3, n=2))
    for (k, v), (k0, v0) in zip(engine.kv_caches, snapshot, strict=True):
        assert torch.equal(k[:, cached], k0) and torch.equal(v[:, cached], v0)


def test_lru_eviction_only_when_space_is_needed() -> None:
    bm = BlockManager(num_blocks=4, block_size=2, prefix_caching=True)
    a: list[int] = []
    ha: list[int] = []
    bm.reserve(a, 0, 5)  # 3 blocks, 2 full
    bm.cache_full_blocks(a, ha, [1, 2, 3, 4, 5], 5)
    assert len(ha) == 2 and bm.num_cached == 2
    bm.release(a)
    assert bm.num_free == 4 and bm.num_cached == 2  # still cached while unreferenced
    blocks, hashes = bm.match([1, 2, 3, 4, 9])
    assert len(blocks) == 2 and hashes == ha and bm.hit_tokens == 4
    assert hashes[1] == block_hash(block_hash(None, [1, 2]), [3, 4])
    bm.release(blocks)
    # A different prefix: no hit, and allocation evicts the least recently used cached block.
    other: list[int] = []
    assert bm.match([7, 7, 7]) == ([], [])
    bm.reserve(other, 0, 8)  # needs all 4 blocks: both cached ones are evicted
    assert bm.num_cached == 0 and bm.num_free == 0
    bm.release(other)
    assert bm.match([1, 2, 3, 4, 9]) == ([], [])
