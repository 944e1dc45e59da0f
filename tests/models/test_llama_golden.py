"""Golden tests: our Llama reproduces transformers on the bundled SmolLM2 GGUF (float32).

Reference outputs come from tests/fixtures/make_reference.py (transformers' own Llama code and
GGUF dequantization); one live test loads transformers directly.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from augury.llm.batch import SeqWork, build_step_batch
from augury.llm.engine import LLMEngine
from augury.llm.kv_cache import allocate_kv_caches
from augury.llm.sampling_params import SamplingParams
from augury.models.default import default_model_path
from augury.models.llama import LlamaModel
from augury.models.tokenizer import Tokenizer
from tests.fixtures.make_reference import greedy as reference_greedy
from tests.llm.helpers import run_all

REFERENCE = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "reference_generations.json").read_text()
)
CASES = REFERENCE["cases"]
# float32 logits of magnitude ~10-40; we observe max differences around 1e-4.
LOGIT_ATOL = 2e-3


def last_logits(model: LlamaModel, prompt_ids: list[int], block_size: int = 16) -> torch.Tensor:
    """Prefill one prompt through the paged path and return its last-position logits."""
    blocks = -(-len(prompt_ids) // block_size)
    caches = allocate_kv_caches(model.cfg, blocks, block_size, model.dtype, model.device)
    batch = build_step_batch(
        [SeqWork(prompt_ids, 0, list(range(blocks)))], [], block_size, model.device
    )
    with torch.inference_mode():
        hidden = model(batch.input_ids, batch.positions, caches, batch.meta)
        return model.compute_logits(hidden[batch.logits_index])[0]


def test_reference_covers_enough_prompts() -> None:
    assert len(CASES) >= 20
    assert {c["kind"] for c in CASES} == {"chat", "raw"}
    assert all(len(c["generated_ids"]) == 64 for c in CASES)


def test_greedy_tokens_identical_to_transformers(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine(kv_cache_memory=128 << 20)
    params = SamplingParams(temperature=0.0, max_tokens=REFERENCE["new_tokens"], ignore_eos=True)
    results = run_all(engine, [c["prompt_ids"] for c in CASES], params)
    mismatches = []
    for case, (sample,) in zip(CASES, results, strict=True):
        if sample.token_ids != case["generated_ids"]:
            at = next(
                i
                for i, (a, b) in enumerate(
                    zip(sample.token_ids, case["generated_ids"], strict=True)
                )
                if a != b
            )
            mismatches.append(f"{case['text'][:30]!r} diverges at token {at}")
    assert not mismatches, mismatches


@pytest.mark.parametrize("case", CASES[:6] + CASES[10:14], ids=lambda c: c["text"][:20])
def test_last_position_logits_match(model_fp32: LlamaModel, case: dict[str, Any]) -> None:
    logits = last_logits(model_fp32, case["prompt_ids"])
    top = torch.tensor(case["top_ids"])
    torch.testing.assert_close(
        logits[top], torch.tensor(case["top_logits"]), atol=LOGIT_ATOL, rtol=0
    )
    probe = torch.tensor(REFERENCE["probe_ids"])
    torch.testing.assert_close(
        logits[probe], torch.tensor(case["probe_logits"]), atol=LOGIT_ATOL, rtol=0
    )
    assert int(logits.argmax()) == case["top_ids"][0]


def test_chat_prompt_ids_match_reference_tokenizer(tokenizer: Tokenizer) -> None:
    for case in CASES:
        if case["kind"] == "chat":
            text = tokenizer.apply_chat_template([{"role": "user", "content": case["text"]}])
            assert tokenizer.encode(text) == case["prompt_ids"], case["text"]


def test_chunked_prefill_matches_one_pass(model_fp32: LlamaModel) -> None:
    """Prefill in three chunks (reading earlier chunks back from the cache) = one pass."""
    ids = CASES[0]["prompt_ids"]
    bs = 16
    blocks = -(-len(ids) // bs)
    caches = allocate_kv_caches(model_fp32.cfg, blocks, bs, torch.float32, model_fp32.device)
    table = list(range(blocks))
    cuts = [0, 7, 20, len(ids)]
    with torch.inference_mode():
        for a, b in itertools.pairwise(cuts):
            batch = build_step_batch([SeqWork(ids[a:b], a, table)], [], bs, model_fp32.device)
            hidden = model_fp32(batch.input_ids, batch.positions, caches, batch.meta)
        chunked = model_fp32.compute_logits(hidden[batch.logits_index])[0]
    torch.testing.assert_close(chunked, last_logits(model_fp32, ids), atol=1e-3, rtol=0)


@pytest.mark.slow
def test_live_against_transformers(model_fp32: LlamaModel) -> None:
    transformers = pytest.importorskip("transformers")
    path = default_model_path()
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in ("The meaning of life is", "Write a limerick about a cat who codes in Rust."):
        ids = tok(text)["input_ids"]
        generated, ref_logits = reference_greedy(ref, ids, 20)
        ours = last_logits(model_fp32, ids)
        torch.testing.assert_close(ours, ref_logits, atol=LOGIT_ATOL, rtol=0)
        # Our greedy continuation, fed token by token through the same paged path.
        seq = list(ids)
        for _ in range(20):
            seq.append(int(last_logits(model_fp32, seq).argmax()))
        assert seq[len(ids) :] == generated
