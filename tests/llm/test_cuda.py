"""The CUDA path: the same engine on a GPU. Skipped where torch sees no CUDA device (CI, this
project's CPU machines); run on a lent GPU machine with `pytest tests/llm/test_cuda.py`.

The reference is the CPU float32 engine over the same weights, itself checked token for token
against transformers (tests/models/test_llama_golden.py). Two devices sum in different orders,
so where greedy outputs part, the CPU's top two tokens at that step must be a near tie."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch

from augury.llm.engine import EngineConfig, LLMEngine, auto_quantization
from augury.llm.sampling_params import SamplingParams
from augury.models.config import LoadedModel
from augury.models.llama import LlamaModel, build_model
from augury.models.tokenizer import Tokenizer
from augury.server.app import create_app
from augury.server.config import ServerConfig
from augury.server.engine_client import LocalEngineClient, load_local_engine
from tests.live_server import start_server
from tests.llm.helpers import Sample, run_all
from tests.models.test_llama_golden import last_logits

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three uses of copper.",
    "Explain in two sentences why the sky is blue.",
    "Continue the sequence: 2, 4, 8, 16,",
    "Translate 'good morning' into Spanish and German.",
]
NEW_TOKENS = 48
NEAR_TIE = 0.05
"""Largest gap (nats) between the CPU's top two log-probabilities at which a device may pick
the other token."""


def chat(tokenizer: Tokenizer, question: str) -> list[int]:
    return tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": question}]))


def parting(reference: Sample, other: Sample) -> str | None:
    """None when `other` follows `reference` (greedy, with top-2 logprobs) up to its end or to
    a step where the reference's top two tokens were a near tie; else what went wrong."""
    for i, (want, got) in enumerate(zip(reference.token_ids, other.token_ids, strict=False)):
        if want == got:
            continue
        top = reference.logprobs[i].top
        gap = top[0][1] - top[1][1]
        if got == top[1][0] and gap < NEAR_TIE:
            return None
        return f"token {i}: {got} instead of {want} (reference top-2 gap {gap:.3f})"
    if len(other.token_ids) != len(reference.token_ids):
        return f"{len(other.token_ids)} tokens instead of {len(reference.token_ids)}"
    return None


@pytest.fixture(scope="module")
def model_cuda(weights: LoadedModel) -> LlamaModel:
    return build_model(weights.config, weights.tensors, dtype=torch.float32, device="cuda")


@pytest.fixture(scope="module")
def reference(model_fp32: LlamaModel, tokenizer: Tokenizer) -> list[Sample]:
    """The CPU float32 engine's greedy answers, with top-2 logprobs at every step."""
    engine = LLMEngine(
        model_fp32, tokenizer, EngineConfig(dtype="float32", kv_cache_memory=64 << 20)
    )
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True, logprobs=2)
    return [s[0] for s in run_all(engine, [chat(tokenizer, q) for q in QUESTIONS], params)]


def cuda_engine(model: LlamaModel, tokenizer: Tokenizer, **overrides: Any) -> LLMEngine:
    cfg: dict[str, Any] = {"dtype": "float32", "device": "cuda", "kv_cache_memory": 64 << 20}
    cfg.update(overrides)
    return LLMEngine(model, tokenizer, EngineConfig(**cfg))


def test_prefill_logits_match_cpu(
    model_cuda: LlamaModel, model_fp32: LlamaModel, tokenizer: Tokenizer
) -> None:
    for q in QUESTIONS[:3]:
        ids = chat(tokenizer, q)
        gpu = last_logits(model_cuda, ids).cpu()
        cpu = last_logits(model_fp32, ids)
        assert gpu.shape == cpu.shape
        assert torch.allclose(gpu, cpu, atol=2e-3, rtol=0), (gpu - cpu).abs().max()


def test_batched_greedy_decoding_follows_cpu(
    model_cuda: LlamaModel, tokenizer: Tokenizer, reference: list[Sample]
) -> None:
    """All prompts at once with a small token budget: chunked prefills mixed with decodes."""
    engine = cuda_engine(model_cuda, tokenizer, max_num_batched_tokens=64, max_num_seqs=8)
    assert engine.kv_caches[0][0].device.type == "cuda"
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    got = run_all(engine, [chat(tokenizer, q) for q in QUESTIONS], params)
    problems = [parting(ref, s[0]) for ref, s in zip(reference, got, strict=True)]
    assert problems == [None] * len(QUESTIONS)
    identical = sum(ref.token_ids == s[0].token_ids for ref, s in zip(reference, got, strict=True))
    assert identical >= len(QUESTIONS) - 1


def test_prefix_cache_and_speculation_on_cuda(
    model_cuda: LlamaModel, tokenizer: Tokenizer, reference: list[Sample]
) -> None:
    """A repeated system prompt hits the prefix cache, a copying prompt gets drafts accepted,
    and the answers still follow the CPU reference."""
    text = "The quick brown fox jumps over the lazy dog. " * 6
    copy_prompt = chat(tokenizer, f"Repeat exactly: {text}")
    engine = cuda_engine(model_cuda, tokenizer, speculative_tokens=4)
    plain = cuda_engine(model_cuda, tokenizer, speculative_tokens=0, enable_prefix_caching=False)
    with_logprobs = SamplingParams(
        temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True, logprobs=2
    )
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    expected = run_all(plain, [copy_prompt], with_logprobs)[0][0]
    got = run_all(engine, [copy_prompt], params)[0][0]  # drafts need no logprobs
    assert parting(expected, got) is None
    assert engine.stats().spec_accepted_tokens > 0
    for q, ref in zip(QUESTIONS[:2], reference, strict=False):
        again = run_all(engine, [chat(tokenizer, q)], params)[0][0]
        assert parting(ref, again) is None
    hits = engine.stats().prefix_cache_hits
    run_all(engine, [chat(tokenizer, QUESTIONS[0])], params)  # the same prompt again
    assert engine.stats().prefix_cache_hits > hits


def test_cuda_graphs_replay_decode_steps_like_eager_ones(
    model_cuda: LlamaModel, tokenizer: Tokenizer
) -> None:
    """Three sequences (a batch bucket of 4: one padding row) with different prompt lengths,
    one finishing early: graph replays give the eager engine's answers."""
    prompts = [chat(tokenizer, q) for q in QUESTIONS[:3]]
    lengths = [40, 12, 40]
    eager = cuda_engine(model_cuda, tokenizer, cuda_graphs=False)
    assert eager.runner.graphs is None
    ref = [
        s[0]
        for s in run_all(
            eager,
            prompts,
            [
                SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, logprobs=2)
                for n in lengths
            ],
        )
    ]
    engine = cuda_engine(model_cuda, tokenizer)
    got = [
        s[0]
        for s in run_all(
            engine,
            prompts,
            [SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True) for n in lengths],
        )
    ]
    graphs = engine.runner.graphs
    assert graphs is not None and graphs.replays >= 30
    assert {b for b, _ in graphs.graphs} == {2, 4}  # 3 rows, then 2 once the short one ends
    assert [parting(r, s) for r, s in zip(ref, got, strict=True)] == [None] * 3
    assert sum(r.token_ids == s.token_ids for r, s in zip(ref, got, strict=True)) >= 2


def test_bfloat16_on_cuda_stays_close(
    weights: LoadedModel, tokenizer: Tokenizer, reference: list[Sample]
) -> None:
    """bfloat16 rounds differently from float32: the first token must agree unless the CPU's
    top two are within 0.5 nats, and most answers agree on their first 8 tokens."""
    model = build_model(weights.config, weights.tensors, dtype=torch.bfloat16, device="cuda")
    assert auto_quantization(weights, torch.bfloat16, "cuda", None) == ("none", None)
    engine = cuda_engine(model, tokenizer, dtype="bfloat16")
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    got = [s[0] for s in run_all(engine, [chat(tokenizer, q) for q in QUESTIONS], params)]
    for ref, s in zip(reference, got, strict=True):
        top = ref.logprobs[0].top
        assert s.token_ids[0] == ref.token_ids[0] or top[0][1] - top[1][1] < 0.5
    assert sum(ref.token_ids[:8] == s.token_ids for ref, s in zip(reference, got, strict=True)) >= 4


def test_seeded_sampling_on_cuda(model_cuda: LlamaModel, tokenizer: Tokenizer) -> None:
    engine = cuda_engine(model_cuda, tokenizer)
    prompt = chat(tokenizer, "Tell me a short story.")

    def sample(seed: int, **kw: Any) -> list[int]:
        params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=24, seed=seed, **kw)
        return run_all(engine, [prompt], params)[0][0].token_ids

    assert sample(7) == sample(7)
    assert len({tuple(sample(s)) for s in range(4)}) > 1
    greedy = run_all(engine, [prompt], SamplingParams(temperature=0.0, max_tokens=24))[0][0]
    assert sample(3, top_k=1) == greedy.token_ids


@pytest.fixture(scope="module")
def cuda_server() -> Iterator[str]:
    client: LocalEngineClient = load_local_engine(
        EngineConfig(device="cuda", dtype="bfloat16", kv_cache_memory=256 << 20)
    )
    live = start_server(create_app(ServerConfig(), engines=[client]))
    yield live.url
    live.stop()
    asyncio.run(client.shutdown())  # engines passed to create_app are the caller's to stop


def test_server_streams_from_a_cuda_engine(cuda_server: str) -> None:
    body = {
        "model": httpx.get(f"{cuda_server}/v1/models").json()["data"][0]["id"],
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
    }
    chunks: list[dict[str, Any]] = []
    with httpx.stream("POST", f"{cuda_server}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert text.strip()
    assert finish[-1] in ("stop", "length")


def test_many_concurrent_sequences_on_cuda(
    model_cuda: LlamaModel, tokenizer: Tokenizer, reference: list[Sample]
) -> None:
    """64 sequences decoding together (the CPU engine's largest batches and beyond)."""
    engine = cuda_engine(model_cuda, tokenizer, max_num_batched_tokens=512)
    prompts = [chat(tokenizer, QUESTIONS[i % len(QUESTIONS)]) for i in range(64)]
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
    got = run_all(engine, prompts, params)
    for i, s in enumerate(got):
        ref = reference[i % len(QUESTIONS)]
        short = Sample(token_ids=ref.token_ids[:16], logprobs=ref.logprobs[:16])
        assert parting(short, s[0]) is None, i
