"""Bucketing of the CUDA decode graphs (the graphs themselves run in tests/llm/test_cuda.py,
on a GPU)."""

from __future__ import annotations

import pytest

from augury.llm.cuda_graphs import BATCH_BUCKETS, MIN_BLOCKS, DecodeGraphs, block_buckets, bucket
from augury.models.llama import LlamaModel


def test_bucket_is_the_smallest_that_fits() -> None:
    assert bucket(1, BATCH_BUCKETS) == 1
    assert bucket(3, BATCH_BUCKETS) == 4
    assert bucket(17, BATCH_BUCKETS) == 24
    assert bucket(128, BATCH_BUCKETS) == 128
    assert bucket(129, BATCH_BUCKETS) is None


def test_block_buckets_double_up_to_the_longest_context() -> None:
    assert block_buckets(512) == (4, 8, 16, 32, 64, 128, 256, 512)
    assert block_buckets(100) == (4, 8, 16, 32, 64, 100)
    assert block_buckets(MIN_BLOCKS) == (MIN_BLOCKS,)
    assert block_buckets(1) == (1,)


def test_graphs_refuse_a_cpu_model(tiny_model: LlamaModel) -> None:
    with pytest.raises(ValueError, match="CUDA device"):
        DecodeGraphs(tiny_model, [], 16, 2048)
