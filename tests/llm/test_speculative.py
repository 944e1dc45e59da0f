"""Speculative decoding: proposals, exact greedy equality, unchanged sampling distribution."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from augury.llm.engine import LLMEngine
from augury.llm.sampling_params import SamplingParams
from augury.llm.speculative import (
    DraftPolicy,
    accept_greedy,
    accept_sampled,
    find_draft,
    fit_line,
    record_verify,
)
from augury.models.tokenizer import Tokenizer
from tests.llm.helpers import run_all

ARTICLE = (
    "The Hubble Space Telescope was launched in 1990 aboard the space shuttle Discovery. "
    "It orbits Earth at about 540 kilometres and has made more than 1.5 million observations. "
    "Its mirror is 2.4 metres across, and five servicing missions repaired and upgraded it."
)


def test_find_draft_takes_what_followed_the_latest_match() -> None:
    tokens = [1, 2, 3, 4, 5, 9, 9, 1, 2, 3, 7, 8, 1, 2, 3]
    assert find_draft(tokens, 3)[0] == [7, 8, 1]  # latest earlier "1 2 3" is followed by 7 8 1
    assert find_draft(tokens, 1)[0] == [7]
    assert find_draft([5, 6, 7], 3)[0] == []  # nothing repeats
    assert find_draft([4, 4], 2)[0] == [4]  # overlapping match, clipped at the end
    assert find_draft(tokens, 0)[0] == []
    assert find_draft(tokens, 3) == ([7, 8, 1], 3)  # and the length of the match
    assert find_draft([9, 5, 6, 5], 2) == ([6, 5], 1)
    assert find_draft([5, 6, 7], 3) == ([], 0)
    # Token ids whose bytes could match across token boundaries are matched per token only.
    assert find_draft([256, 0, 5, 1], 2)[0] == []  # 01 00 00 00 straddles 256 and 0


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


def test_rejected_drafts_stop_drafting(
    make_engine: Callable[..., LLMEngine], tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drafts the target keeps rejecting (here: always token 0, offered as a 4-token match, the
    strongest kind) stop costing verify work: each rejection lowers the sequence's expected
    acceptance until drafting no longer pays; the record then decays back towards the prior
    and one short draft tries again now and then. The output stays what plain decoding gives."""
    from augury.llm import engine as engine_module

    monkeypatch.setattr(engine_module, "find_draft", lambda ids, room: ([0] * room, 4))
    prompt = grounded_prompts(tokenizer)[0]
    params = SamplingParams(temperature=0.0, max_tokens=60, ignore_eos=True)
    expected = run_all(make_engine(speculative_tokens=0), [prompt], params)[0][0]
    engine = make_engine(speculative_tokens=4)
    got = run_all(engine, [prompt], params)[0][0]
    assert got.token_ids == expected.token_ids
    stats = engine.stats()
    assert stats.spec_accepted_tokens == 0
    # Drafting on every one of the 59 decode steps would propose up to 236 tokens.
    assert 0 < stats.spec_proposed_tokens <= 30


def test_draft_policy_weighs_acceptance_against_measured_cost() -> None:
    """Plain one-sequence steps of 4 ms, verify steps costing 0.2 ms + 1 ms per drafted row:
    the fitted costs are 0.05 and 0.25 of a step, and the draft length maximizes the expected
    extra tokens (sum of alpha^i) minus that cost."""
    policy = DraftPolicy(max_tokens=8)
    for _ in range(8):
        policy.observe_step(1, 1, 4.0)
    for rows in (2, 5, 9, 3):
        policy.observe_step(1, rows, 4.0 + 0.2 + 1.0 * (rows - 1))
    fixed, row = policy.costs(1)
    assert fixed == pytest.approx(0.05) and row == pytest.approx(0.25)
    # No record yet: the match length's prior. alpha 0.7 (4-token match): gains 0.7, 0.49,
    # 0.34, 0.24 against 0.25 per row -> 3 tokens; alpha 0.2 (1-token match): none.
    assert policy.length(0.0, 0.0, match=4, batch=1, room=8) == 3
    assert policy.length(0.0, 0.0, match=1, batch=1, room=8) == 0
    # A sequence that has been copying (19 of 20 accepted): from a 4-token match alpha is
    # (19 + 4 x 0.7) / 24 = 0.91 and even the 8th token (0.91^8 = 0.46) pays; from a 1-token
    # match (19 + 4 x 0.2) / 24 = 0.825, whose 8th power (0.21) does not.
    assert policy.length(19.0, 20.0, match=4, batch=1, room=8) == 8
    assert policy.length(19.0, 20.0, match=1, batch=1, room=8) == 7
    assert policy.length(19.0, 20.0, match=4, batch=1, room=2) == 2
    # One that keeps being rejected: nothing, even from a long match.
    assert policy.length(0.0, 12.0, match=4, batch=1, room=8) == 0
    # Four sequences share a 6 ms step: a row costs 1/6 of the step, 4 x 1/6 of a token. Only
    # a sequence that has been copying still drafts, and fewer tokens (0.91^5 = 0.62 < 0.67).
    for _ in range(8):
        policy.observe_step(4, 4, 6.0)
    assert policy.costs(4)[1] == pytest.approx(4 / 6)
    assert policy.length(0.0, 0.0, match=4, batch=4, room=8) == 0
    assert policy.length(19.0, 20.0, match=4, batch=4, room=8) == 4


def test_draft_policy_bounds_a_noisy_cost_estimate() -> None:
    """Steps stalled by the machine must not switch drafting off for good (only drafted steps
    would measure the cost again): the per-row share is capped."""
    policy = DraftPolicy(max_tokens=4)
    for _ in range(4):
        policy.observe_step(1, 1, 4.0)
    policy.observe_step(1, 2, 400.0)  # one verify step caught in a 0.4 s stall
    assert policy.costs(1)[1] == pytest.approx(0.5)
    assert policy.length(19.0, 20.0, match=4, batch=1, room=4) > 0
    assert fit_line([(1, 1.2), (2, 2.2), (4, 4.2)]) == pytest.approx((0.2, 1.0))
    assert fit_line([(2, 3.0), (2, 5.0)]) == pytest.approx((0.0, 2.0))  # x never varies


def test_record_verify_counts_the_positions_tried() -> None:
    assert record_verify(0.0, 0.0, drafted=4, accepted=4) == (4.0, 4.0)  # all taken, no miss
    assert record_verify(1.0, 2.0, drafted=4, accepted=1) == (2.0, 4.0)  # 2nd tried, rejected
    assert record_verify(0.0, 0.0, drafted=3, accepted=0) == (0.0, 1.0)
