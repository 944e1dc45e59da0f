"""A tiny random-weight Llama with the real tokenizer: fast steps for bookkeeping-heavy tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from augury.llm.engine import EngineConfig, LLMEngine
from augury.models.config import LlamaConfig
from augury.models.llama import LlamaModel, build_model
from augury.models.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def tiny_model() -> LlamaModel:
    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    )
    gen = torch.Generator().manual_seed(0)
    tensors = {
        name: torch.randn(shape, generator=gen) * (1.0 if len(shape) == 1 else 0.5)
        for name, shape in cfg.expected_shapes().items()
    }
    return build_model(cfg, tensors, dtype=torch.float32)


@pytest.fixture
def make_tiny_engine(tiny_model: LlamaModel, tokenizer: Tokenizer) -> Callable[..., LLMEngine]:
    def make(**overrides: Any) -> LLMEngine:
        cfg: dict[str, Any] = {"dtype": "float32", "kv_cache_memory": 4 << 20}
        cfg.update(overrides)
        return LLMEngine(tiny_model, tokenizer, EngineConfig(**cfg))

    return make
