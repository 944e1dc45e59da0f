"""The sampler against direct computations: sets, frequencies, penalties, logprobs."""

from __future__ import annotations

import torch

from augury.llm.sampler import Sampler, SampleRow
from augury.llm.sampling_params import SamplingParams

V = 50
EOS = 0


def rows(params: SamplingParams, b: int, output_ids: list[int] | None = None) -> list[SampleRow]:
    return [SampleRow(params, [1, 2, 3], output_ids or [], None) for _ in range(b)]


def draw(logits: torch.Tensor, params: SamplingParams, n: int = 4000) -> torch.Tensor:
    """n draws from one row of logits, batched n at a time (the sampler is vectorized)."""
    sampler = Sampler(V, [EOS])
    batch = logits.expand(n, V).clone()
    return torch.tensor(sampler(batch, rows(params, n)).token_ids)


def fixed_logits() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(V, generator=g) * 2


def test_top_k_never_leaves_its_set_and_matches_frequencies() -> None:
    torch.manual_seed(1)
    logits = fixed_logits()
    tokens = draw(logits, SamplingParams(temperature=1.0, top_k=5), n=20000)
    allowed = set(torch.topk(logits, 5).indices.tolist())
    assert set(tokens.tolist()) <= allowed
    expected = torch.softmax(logits[sorted(allowed)], dim=0)
    observed = torch.tensor([(tokens == t).float().mean().item() for t in sorted(allowed)])
    assert torch.allclose(observed, expected, atol=0.015)


def test_a_vanishing_top_p_keeps_the_top_token() -> None:
    """5e-324 passes validation (> 0) but is 0 in float32: the top token must stay (it had
    left an all-zero distribution, NaN in speculative verification; found by schemathesis)."""
    logits = fixed_logits()
    params = SamplingParams(temperature=1.0, top_p=5e-324)
    probs = Sampler(V, [EOS]).probabilities(logits[None], rows(params, 1))
    assert probs[0].nonzero().flatten().tolist() == [int(logits.argmax())]
    assert set(draw(logits, params, n=50).tolist()) == {int(logits.argmax())}


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    torch.manual_seed(2)
    logits = fixed_logits()
    probs = torch.softmax(logits, dim=0)
    sorted_p, order = probs.sort(descending=True)
    k = int((sorted_p.cumsum(0) < 0.8).sum()) + 1  # tokens needed to reach 0.8
    allowed = set(order[:k].tolist())
    tokens = draw(logits, SamplingParams(temperature=1.0, top_p=0.8), n=20000)
    assert set(tokens.tolist()) <= allowed
    assert len(set(tokens.tolist())) == len(allowed)  # and uses all of it
    expected = probs[order[:k]] / probs[order[:k]].sum()
    observed = torch.tensor([(tokens == t).float().mean().item() for t in order[:k].tolist()])
    assert torch.allclose(observed, expected, atol=0.015)


def test_min_p_drops_unlikely_tokens() -> None:
    torch.manual_seed(3)
    logits = fixed_logits()
    probs = torch.softmax(logits, dim=0)
    allowed = set(torch.nonzero(probs >= 0.2 * probs.max()).flatten().tolist())
    tokens = draw(logits, SamplingParams(temperature=1.0, min_p=0.2), n=10000)
    assert set(tokens.tolist()) <= allowed


def test_temperature_sharpens_distribution() -> None:
    torch.manual_seed(4)
    logits = fixed_logits()
    tokens = draw(logits, SamplingParams(temperature=0.5), n=20000)
    expected = torch.softmax(logits / 0.5, dim=0)
    observed = torch.bincount(tokens, minlength=V).float() / len(tokens)
    assert (observed - expected).abs().max() < 0.015


def test_greedy_rows_mixed_with_sampled_rows() -> None:
    sampler = Sampler(V, [EOS])
    logits = fixed_logits().expand(4, V).clone()
    greedy = SamplingParams(temperature=0.0)
    hot = SamplingParams(temperature=5.0)
    result = sampler(logits, [SampleRow(p, [], [], None) for p in (greedy, hot, greedy, hot)])
    best = int(logits[0].argmax())
    assert result.token_ids[0] == result.token_ids[2] == best


def test_penalties_follow_their_formulas() -> None:
    sampler = Sampler(V, [EOS])
    logits = torch.linspace(-3, 3, V).unsqueeze(0)
    p = SamplingParams(
        temperature=0.0, repetition_penalty=2.0, presence_penalty=0.5, frequency_penalty=0.25
    )
    out_ids = [49, 49, 10]
    row = SampleRow(p, [20], out_ids, None)
    processed = logits.clone()
    sampler._apply_penalties(processed, [row])
    expected = logits.clone()[0]
    for t, count in ((49, 2), (10, 1)):
        expected[t] -= 0.25 * count + 0.5
    for t in (49, 10, 20):
        expected[t] = expected[t] / 2.0 if expected[t] > 0 else expected[t] * 2.0
    torch.testing.assert_close(processed[0], expected)
    # Token 49 was the argmax; the penalties move the choice to 48.
    assert sampler(logits, [row]).token_ids == [48]


def test_min_tokens_bans_eos_and_stop_tokens() -> None:
    sampler = Sampler(V, [EOS])
    logits = torch.zeros(1, V)
    logits[0, EOS] = 10.0
    logits[0, 7] = 9.0
    logits[0, 8] = 8.0
    p = SamplingParams(temperature=0.0, min_tokens=2, stop_token_ids=[7])
    assert sampler(logits, [SampleRow(p, [], [5], None)]).token_ids == [8]
    assert sampler(logits, [SampleRow(p, [], [5, 6], None)]).token_ids == [EOS]


def test_seeded_rows_do_not_depend_on_batch_neighbours() -> None:
    logits = fixed_logits()
    p = SamplingParams(temperature=1.0, seed=9)

    def seeded(neighbours: int) -> int:
        sampler = Sampler(V, [EOS])
        batch = logits.expand(neighbours + 1, V).clone()
        rows_ = [
            SampleRow(SamplingParams(temperature=1.0), [], [], None) for _ in range(neighbours)
        ]
        rows_.append(SampleRow(p, [], [], torch.Generator().manual_seed(9)))
        return sampler(batch, rows_).token_ids[-1]

    assert len({seeded(n) for n in (0, 1, 7, 31)}) == 1


def test_logprobs_are_log_softmax_of_raw_logits() -> None:
    sampler = Sampler(V, [EOS])
    logits = fixed_logits().unsqueeze(0)
    p = SamplingParams(temperature=0.0, logprobs=3, repetition_penalty=1.5)
    (lp,) = sampler(logits, [SampleRow(p, [], [], None)]).logprobs
    ref = torch.log_softmax(logits[0], dim=0)
    assert lp is not None
    assert lp.logprob == float(ref[lp.token_id])
    assert [t for t, _ in lp.top] == torch.topk(ref, 3).indices.tolist()


def test_draw_matches_the_distribution_and_never_picks_a_zero() -> None:
    """The inverse-CDF draw, shared and seeded: frequencies within 4 standard errors of the
    (unnormalized) probabilities, a zero-probability token never drawn, even at the ends."""
    probs = torch.tensor([0.0, 3.0, 0.0, 1.0, 0.5, 0.0, 0.0, 2.5, 0.0, 0.0] + [0.0] * (V - 10))
    n = 20000
    sampler = Sampler(V, [EOS])
    plain = SamplingParams(temperature=1.0)
    torch.manual_seed(3)
    shared = sampler._draw(probs.expand(n, V).clone(), rows(plain, n))
    g = torch.Generator().manual_seed(4)
    seeded_rows = [SampleRow(plain, [], [], g) for _ in range(n)]
    seeded = sampler._draw(probs.expand(n, V).clone(), seeded_rows)
    expected = probs / probs.sum()
    for tokens in (shared, seeded):
        observed = torch.bincount(tokens, minlength=V).double() / n
        assert set(tokens.tolist()) == {1, 3, 4, 7}
        error = (expected * (1 - expected) / n).sqrt()
        assert bool(((observed - expected).abs() <= 4 * error + 1e-12).all())
