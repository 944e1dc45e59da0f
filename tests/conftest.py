"""Shared fixtures: the bundled model is loaded once per test session."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from augury.llm.engine import EngineConfig, LLMEngine
from augury.models.config import LoadedModel
from augury.models.default import default_model_path
from augury.models.llama import LlamaModel, build_model
from augury.models.loader.gguf import load_gguf
from augury.models.tokenizer import Tokenizer
from augury.server.engine_client import LocalEngineClient, load_local_engine

# One thread by default: on a shared 2-core machine, two OpenMP threads next to any other busy
# process make small ops orders of magnitude slower. Set AUGURY_TEST_THREADS to change it.
torch.set_num_threads(int(os.environ.get("AUGURY_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def weights() -> LoadedModel:
    return load_gguf(default_model_path())


@pytest.fixture(scope="session")
def tokenizer(weights: LoadedModel) -> Tokenizer:
    return Tokenizer.from_gguf_metadata(weights.metadata)


@pytest.fixture(scope="session")
def model_fp32(weights: LoadedModel) -> LlamaModel:
    return build_model(weights.config, weights.tensors, dtype=torch.float32)


@pytest.fixture(scope="session")
def local_engine() -> Iterator[LocalEngineClient]:
    """The bundled model served by a real AsyncEngine (float32, one thread), shared by the
    server and web tests of a session."""
    config = EngineConfig(dtype="float32", kv_cache_memory=64 << 20, num_threads=1)
    client = load_local_engine(config)
    yield client
    asyncio.run(client.shutdown())


@pytest.fixture
def make_engine(model_fp32: LlamaModel, tokenizer: Tokenizer) -> Callable[..., LLMEngine]:
    """Engines over the shared float32 model; each gets its own (small by default) KV cache."""

    def make(**overrides: Any) -> LLMEngine:
        cfg: dict[str, Any] = {"dtype": "float32", "kv_cache_memory": 32 << 20}
        cfg.update(overrides)
        return LLMEngine(model_fp32, tokenizer, EngineConfig(**cfg))

    return make
