"""Engine invariants: batch invariance, preemption, no block leaks, seeds, stops, n > 1."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch

from augury.llm.engine import LLMEngine, QueueFullError
from augury.llm.kv_cache import bytes_per_block
from augury.llm.sampling_params import SamplingParams
from augury.models.tokenizer import Tokenizer
from tests.llm.helpers import run_all

TOPICS = [
    "the ocean",
    "a robot",
    "coffee",
    "the moon",
    "winter",
    "a library",
    "jazz",
    "mountains",
    "a lighthouse",
    "bees",
    "trains",
    "chess",
    "volcanoes",
    "a garden",
    "the desert",
    "rain",
]
GREEDY = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)


def chat(tokenizer: Tokenizer, text: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}])


@pytest.fixture(scope="module")
def sixteen_prompts(tokenizer: Tokenizer) -> list[str]:
    return [chat(tokenizer, f"Write one sentence about {t}.") for t in TOPICS]


def test_batch_invariance_alone_together_and_preempted(
    make_engine: Callable[..., LLMEngine], sixteen_prompts: list[str]
) -> None:
    together = run_all(make_engine(kv_cache_memory=64 << 20), sixteen_prompts, GREEDY)
    engine = make_engine()
    alone = [run_all(engine, [p], GREEDY)[0] for p in sixteen_prompts]
    assert [s[0].token_ids for s in together] == [s[0].token_ids for s in alone]
    # A cache far too small for 16 requests at once: the scheduler must preempt and recompute.
    per_block = bytes_per_block(engine.model.cfg, 16, torch.float32)
    tiny = make_engine(kv_cache_memory=12 * per_block, max_num_batched_tokens=128)
    squeezed = run_all(tiny, sixteen_prompts, GREEDY)
    assert tiny.stats().preemptions_total > 0
    assert [s[0].token_ids for s in squeezed] == [s[0].token_ids for s in together]
    assert tiny.blocks.num_free == tiny.blocks.num_blocks


def test_no_block_leak_after_1000_random_requests_with_aborts(
    make_tiny_engine: Callable[..., LLMEngine],
) -> None:
    rng = random.Random(1234)
    engine = make_tiny_engine(kv_cache_memory=32 * 8192, max_num_seqs=32, max_num_batched_tokens=64)
    live: list[str] = []
    submitted = 0
    while submitted < 1000 or engine.has_unfinished():
        for _ in range(rng.randint(0, 8)):
            if submitted >= 1000:
                break
            prompt = [rng.randrange(3, 49152) for _ in range(rng.randint(1, 80))]
            params = SamplingParams(
                temperature=rng.choice([0.0, 0.7, 1.0]),
                max_tokens=rng.randint(1, 24),
                n=rng.choice([1, 1, 1, 2, 3]),
                ignore_eos=rng.random() < 0.5,
                seed=rng.choice([None, rng.randrange(1000)]),
            )
            rid = f"r{submitted}"
            engine.add_request(rid, prompt, params)
            live.append(rid)
            submitted += 1
        if live and rng.random() < 0.3:
            engine.abort(live.pop(rng.randrange(len(live))))
        for out in engine.step():
            if out.finished and out.request_id in live:
                live.remove(out.request_id)
        used = engine.blocks.num_used
        assert 0 <= used <= engine.blocks.num_blocks
    assert engine.stats().preemptions_total > 0, "the test should exercise preemption"
    assert engine.blocks.num_free == engine.blocks.num_blocks
    assert all(engine.blocks.ref_count(b) == 0 for b in range(engine.blocks.num_blocks))
    assert not engine.scheduler.running and engine.scheduler.num_waiting == 0


def test_seeded_sampling_is_reproducible_whatever_else_runs(
    make_engine: Callable[..., LLMEngine], sixteen_prompts: list[str]
) -> None:
    seeded = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=16, seed=42, ignore_eos=True)
    engine = make_engine()
    alone = run_all(engine, [sixteen_prompts[0]], seeded)[0][0]
    noisy = SamplingParams(temperature=1.2, max_tokens=12, ignore_eos=True)
    mixed = run_all(
        engine, [sixteen_prompts[3], sixteen_prompts[0], sixteen_prompts[5]], [noisy, seeded, noisy]
    )
    assert mixed[1][0].token_ids == alone.token_ids
    other_seed = run_all(
        engine,
        [sixteen_prompts[0]],
        SamplingParams(temperature=1.0, max_tokens=16, seed=43, ignore_eos=True),
    )
    assert other_seed[0][0].token_ids != alone.token_ids


def test_stop_string_cuts_exactly(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer
) -> None:
    engine = make_engine()
    prompt = chat(tokenizer, "List the days of the week, comma separated.")
    full = run_all(engine, [prompt], SamplingParams(temperature=0.0, max_tokens=40))[0][0]
    assert len(full.text) > 12
    stop = full.text[8:12]  # four characters from the middle, likely spanning tokens
    cut = run_all(engine, [prompt], SamplingParams(temperature=0.0, max_tokens=40, stop=[stop]))[0][
        0
    ]
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert cut.stop_reason == stop


def test_stop_token_and_eos_finish(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer
) -> None:
    engine = make_engine()
    prompt = chat(tokenizer, "What is the capital of France?")
    natural = run_all(engine, [prompt], SamplingParams(temperature=0.0, max_tokens=60))[0][0]
    assert natural.finish_reason == "stop" and natural.stop_reason is None
    assert natural.token_ids[-1] in engine.eos_token_ids
    assert "Paris" in natural.text
    second = natural.token_ids[1]
    stopped = run_all(
        engine, [prompt], SamplingParams(temperature=0.0, max_tokens=60, stop_token_ids=[second])
    )[0][0]
    assert stopped.token_ids == natural.token_ids[:2]
    assert stopped.stop_reason == second
    # min_tokens bans EOS until reached; max_tokens ends with 'length'.
    longer = run_all(
        engine,
        [prompt],
        SamplingParams(temperature=0.0, max_tokens=60, min_tokens=len(natural.token_ids) + 3),
    )[0][0]
    assert len(longer.token_ids) >= len(natural.token_ids) + 3
    short = run_all(engine, [prompt], SamplingParams(temperature=0.0, max_tokens=3))[0][0]
    assert short.finish_reason == "length" and len(short.token_ids) == 3


def test_n_samples_share_prompt_blocks(
    make_engine: Callable[..., LLMEngine], sixteen_prompts: list[str]
) -> None:
    engine = make_engine()
    single = run_all(engine, [sixteen_prompts[2]], GREEDY)[0][0]
    engine.add_request(
        "fork",
        sixteen_prompts[2],
        SamplingParams(temperature=0.0, max_tokens=16, n=3, ignore_eos=True),
    )
    engine.step()  # prefill, then fork into three samples
    prompt_blocks = engine.blocks.blocks_for_tokens(len(engine.tokenize_prompt(sixteen_prompts[2])))
    # Shared prompt blocks are counted once: far fewer than three private copies.
    assert engine.blocks.num_used <= prompt_blocks + 3
    samples = []
    while engine.has_unfinished():
        for out in engine.step():
            samples.extend(out.outputs)
    assert engine.blocks.num_free == engine.blocks.num_blocks
    greedy_n = run_all(
        engine,
        [sixteen_prompts[2]],
        SamplingParams(temperature=0.0, max_tokens=16, n=3, ignore_eos=True),
    )[0]
    assert [s.token_ids for s in greedy_n] == [single.token_ids] * 3
    sampled = run_all(
        engine,
        [sixteen_prompts[2]],
        SamplingParams(temperature=1.0, max_tokens=16, n=3, seed=5, ignore_eos=True),
    )[0]
    assert len({tuple(s.token_ids) for s in sampled}) > 1


def test_logprobs_equal_log_softmax(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer
) -> None:
    from tests.models.test_llama_golden import last_logits

    engine = make_engine()
    prompt = chat(tokenizer, "Say hello.")
    ids = engine.tokenize_prompt(prompt)
    out = run_all(engine, [prompt], SamplingParams(temperature=0.0, max_tokens=2, logprobs=5))[0][0]
    expected = torch.log_softmax(last_logits(engine.model, ids), dim=-1)
    first = out.logprobs[0]
    assert first.token_id == out.token_ids[0] == int(expected.argmax())
    assert first.logprob == pytest.approx(float(expected[first.token_id]), abs=1e-4)
    top = torch.topk(expected, 5)
    assert [t for t, _ in first.top] == top.indices.tolist()
    assert [v for _, v in first.top] == pytest.approx(top.values.tolist(), abs=1e-4)


def test_logit_bias_forces_a_token(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine()
    out = run_all(
        engine, ["Hello"], SamplingParams(temperature=0.0, max_tokens=5, logit_bias={314: 100.0})
    )[0][0]
    assert out.token_ids == [314] * 5


def test_long_prompt_does_not_stall_decoders(make_tiny_engine: Callable[..., LLMEngine]) -> None:
    engine = make_tiny_engine(kv_cache_memory=8 << 20, max_num_batched_tokens=64, max_num_seqs=16)
    params = SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True)
    for i in range(8):
        engine.add_request(f"d{i}", [100 + i] * 5, params)
    for _ in range(3):
        engine.step()
    engine.add_request("long", list(range(1000, 1900)), SamplingParams(max_tokens=4))
    chunks_seen = 0
    while engine.scheduler.running and any(
        s.request_id == "long" and s.in_prefill
        for s in engine.scheduler.running + [w[3] for w in engine.scheduler._waiting]
    ):
        outs = {o.request_id for o in engine.step()}
        assert {f"d{i}" for i in range(8)} <= outs, "every decoder gets a token every step"
        chunks_seen += 1
    assert chunks_seen >= 900 // 64  # the prompt really was split into chunks


def test_admission_refuses_what_can_never_fit(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine(max_model_len=64)
    with pytest.raises(ValueError, match="context length of 64"):
        engine.add_request("a", list(range(10, 60)), SamplingParams(max_tokens=20))
    small = make_engine(kv_cache_memory=4 * bytes_per_block(engine.model.cfg, 16, torch.float32))
    with pytest.raises(ValueError, match="can never fit the KV cache"):
        small.add_request("b", list(range(10, 60)), SamplingParams(max_tokens=30))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.add_request("c", [49152], SamplingParams())
    with pytest.raises(ValueError, match="empty"):
        engine.add_request("d", [], SamplingParams())
    full = make_engine(max_waiting=2)
    full.add_request("x", "a", SamplingParams())
    full.add_request("y", "b", SamplingParams())
    with pytest.raises(QueueFullError):
        full.add_request("z", "c", SamplingParams())


def test_abort_frees_blocks_immediately(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine()
    engine.add_request(
        "a", "Tell me a long story about dragons.", SamplingParams(max_tokens=100, ignore_eos=True)
    )
    engine.add_request(
        "b", "Count to twenty.", SamplingParams(temperature=0.0, max_tokens=10, ignore_eos=True)
    )
    engine.step()
    engine.step()
    assert engine.blocks.num_used > 0
    assert engine.abort("a")
    assert not engine.abort("a")
    remaining = {s.request_id for s in engine.scheduler.running}
    assert remaining == {"b"}
    b_blocks = engine.blocks.blocks_for_tokens(engine.scheduler.running[0].num_computed)
    assert engine.blocks.num_used == b_blocks
