"""Speculative decoding: proposals, exact greedy equality, unchanged sampling distribution."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from augury.llm.engine import LLMEngine
from augury.llm.sampling_params import SamplingParams
from augury.llm.speculative import accept_greedy, accept_sampled, propose_ngram
from augury.models.tokenizer import Tokenizer
from tests.llm.helpers import run_all

ARTICLE = (
    "The Hubble Space Telescope was launched in 1990 aboard the space shuttle Discovery. "
    "It orbits Earth at about 540 kilometres and has made more than 1.5 million observations. "
    "Its mirror is 2.4 metres across, and five servicing missions repaired and upgraded it."
)


def test_propose_ngram_takes_what_followed_the_latest_match() -> None:
    tokens = [1, 2, 3, 4, 5, 9, 9, 1, 2, 3, 7, 8, 1, 2, 3]
    assert propose_ngram(tokens, 3) == [7, 8, 1]  # latest earlier "1 2 3" is followed by 7 8 1
    assert propose_ngram(tokens, 1) == [7]
    assert propose_ngram([5, 6, 7], 3) == []  # nothing repeats
    assert propose_ngram([4, 4], 2) == [4]  # overlapping match, clipped at the end
    assert propose_ngram(tokens, 0) == []
    # Token ids whose bytes could match across token boundaries are matched per token only.
    assert propose_ngram([256, 0, 5, 1], 2) == []  # 01 00 00 00 straddles 256 and 0


def test_accept_greedy_stops_at_first_mismatch() -> None:
    logits = torch.full((4, 10), -1.0)
    for i, best in enumerate([3, 5, 7, 2]):
        logits[i, best] = 1.0
    assert accept_greedy(logits, [3, 5, 7]) == [3, 5, 7, 2]  # all accepted + bonus
    assert accept_greedy(logits, [3, 6, 7]) == [3, 5]  # second draft wrong: corrected token


def test_accept_sampled_preserves_the_target_distribution() -> None:
    """First emitted token must follow p_0 whatever the draft (rejection rule, q a point mass)."""
    gen = torch.Generator().manual_seed(0)
    p0 = torch.tensor([0.5, 0.3, 0.15, 0.05])
    probs = torch.stack([p0, torch.tensor([0.25] * 4)])
    for draft in ([0], [1], [3]):
        counts = torch.zeros(4)
        n = 20000
        for _ in range(n):
            counts[accept_sampled(probs, draft, gen)[0]] += 1
        assert torch.allclose(counts / n, p0, atol=0.012), (draft, counts / n)


def grounded_prompts(tokenizer: Tokenizer) -> list[str]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Repeat this text exactly:\n\n{ARTICLE}"}]
        ),
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{ARTICLE}\n\nWhen was the telescope launched?"}]
        ),
        "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n",
    ]


def test_greedy_output_identical_with_and_without_speculation(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer
) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=48, ignore_eos=True)
    plain = make_engine(speculative_tokens=0)
    spec = make_engine(speculative_tokens=4)
    for prompt in grounded_prompts(tokenizer):
        expected = run_all(plain, [prompt], params)[0][0]
        got = run_all(spec, [prompt], params)[0][0]
        assert got.token_ids == expected.token_ids
        assert got.text == expected.text
    stats = spec.stats()
    assert stats.spec_accepted_tokens > 0.3 * stats.spec_proposed_tokens > 0
    assert spec.blocks.num_used == 0  # trimmed blocks were all given back
    # Fewer steps than tokens: several tokens per verified step.
    assert stats.steps_total < stats.generation_tokens_total


def test_speculation_respects_stops_and_max_tokens(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer
) -> None:
    prompt = grounded_prompts(tokenizer)[0]
    plain = run_all(
        make_engine(speculative_tokens=0), [prompt], SamplingParams(temperature=0.0, max_tokens=40)
    )
    engine = make_engine(speculative_tokens=4)
    got = run_all(engine, [prompt], SamplingParams(temperature=0.0, max_tokens=13))[0][0]
    assert got.token_ids == plain[0][0].token_ids[:13] and got.finish_reason == "length"
    stop = plain[0][0].text[20:26]
    cut = run_all(engine, [prompt], SamplingParams(temperature=0.0, max_tokens=40, stop=[stop]))[0][
        0
    ]
    assert cut.text == plain[0][0].text[: plain[0][0].text.index(stop)]


@pytest.mark.parametrize("seed", [1, 2])
def test_sampled_speculation_runs_and_frees_blocks(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer, seed: int
) -> None:
    engine = make_engine(speculative_tokens=4)
    params = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=32, seed=seed, ignore_eos=True)
    out = run_all(engine, grounded_prompts(tokenizer), params)
    assert all(len(s[0].token_ids) == 32 for s in out)
    assert engine.blocks.num_used == 0


def test_rejected_drafts_pause_drafting(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drafts the target keeps rejecting (here: always token 0) stop costing verify work: after
    ~12 rejected draft tokens the sequence drafts nothing for SPEC_PAUSE_STEPS steps, then probes
    once. The output stays what plain decoding gives."""
    from augury.llm import engine as engine_module

    monkeypatch.setattr(engine_module, "propose_ngram", lambda ids, room: [0] * room)
    prompt = grounded_prompts(tokenizer)[0]
    params = SamplingParams(temperature=0.0, max_tokens=60, ignore_eos=True)
    expected = run_all(make_engine(speculative_tokens=0), [prompt], params)[0][0]
    engine = make_engine(speculative_tokens=4)
    got = run_all(engine, [prompt], params)[0][0]
    assert got.token_ids == expected.token_ids
    stats = engine.stats()
    assert stats.spec_accepted_tokens == 0
    # Without the pause every one of the 59 decode steps would draft 4 tokens (236); with it,
    # 4 drafting steps, then one probe per SPEC_PAUSE_STEPS + 1 steps.
    probes = 60 // (engine_module.SPEC_PAUSE_STEPS + 1) + 1
    assert 0 < stats.spec_proposed_tokens <= 4 * (4 + probes) < 236
