from __future__ import annotations

import pytest

from augury.llm.sampling_params import SamplingParams


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("temperature", -0.1, "temperature must be in [0.0, 100.0], got -0.1"),
        ("temperature", float("nan"), "temperature must be in"),
        ("top_p", 0.0, "top_p must be in (0.0, 1.0], got 0.0"),
        ("top_p", 1.5, "top_p must be in"),
        ("top_k", -3, "top_k must be in [0,"),
        ("min_p", 2.0, "min_p must be in [0.0, 1.0]"),
        ("n", 0, "n must be in [1, 128], got 0"),
        ("max_tokens", 0, "max_tokens must be in [1,"),
        ("presence_penalty", 3.0, "presence_penalty must be in [-2.0, 2.0], got 3.0"),
        ("frequency_penalty", -2.5, "frequency_penalty must be in"),
        ("repetition_penalty", 0.0, "repetition_penalty must be in (0.0"),
        ("logprobs", 21, "logprobs must be in [0, 20], got 21"),
        ("max_tokens", "10", "max_tokens must be an integer, got '10'"),
        ("temperature", True, "temperature must be a number"),
        ("stop", [""], "stop: each stop string must be a non-empty string"),
        ("stop_token_ids", [-1], "stop_token_ids: -1"),
        ("logit_bias", {5: 200.0}, "logit_bias[5] must be in [-100.0, 100.0]"),
    ],
)
def test_bad_values_name_field_value_and_range(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        SamplingParams(**{field: value})  # type: ignore[arg-type]
    assert fragment in str(err.value)


def test_defaults_and_normalisation() -> None:
    p = SamplingParams(top_k=-1, stop="END")  # type: ignore[arg-type]
    assert p.top_k == 0 and p.stop == ("END",)
    assert SamplingParams(temperature=0).greedy
    with pytest.raises(ValueError, match="min_tokens must be in \\[0, 5\\]"):
        SamplingParams(max_tokens=5, min_tokens=6)


def test_vocab_check() -> None:
    with pytest.raises(ValueError, match="logit_bias: token id 60000 is outside the vocabulary"):
        SamplingParams(logit_bias={60000: 1.0}).check_vocab(49152)
