"""Text completions through the official OpenAI SDK against the live server."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from augury.server.engine_client import LocalEngineClient
from tests.server.conftest import KEY, LiveServer


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0) as c:
        yield c


def test_text_prompt(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    r = client.completions.create(
        model=engine.model_id, prompt="The capital of France is", max_tokens=4, temperature=0
    )
    assert r.id.startswith("cmpl-") and r.object == "text_completion"
    (choice,) = r.choices
    assert choice.text and choice.finish_reason == "length" and choice.logprobs is None
    assert r.usage is not None and r.usage.completion_tokens == 4


def test_default_max_tokens_is_16(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    r = client.completions.create(
        model=engine.model_id,
        prompt="Count: 1, 2, 3,",
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert r.usage is not None and r.usage.completion_tokens == 16


def test_token_ids_and_batches_with_n(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    ids = engine.tokenize("The capital of France is")
    single = client.completions.create(
        model=engine.model_id, prompt=ids, max_tokens=3, temperature=0
    )
    text = client.completions.create(
        model=engine.model_id, prompt="The capital of France is", max_tokens=3, temperature=0
    )
    assert single.choices[0].text == text.choices[0].text
    batch = client.completions.create(
        model=engine.model_id, prompt=["Hello", "Goodbye"], max_tokens=2, n=2, seed=5
    )
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert batch.usage is not None and batch.usage.completion_tokens == 8


def test_echo_and_logprobs(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    echoed = client.completions.create(
        model=engine.model_id, prompt="Once upon a time", max_tokens=2, temperature=0, echo=True
    )
    assert echoed.choices[0].text.startswith("Once upon a time")
    r = client.completions.create(
        model=engine.model_id, prompt="Once upon a time", max_tokens=3, temperature=0, logprobs=2
    )
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and len(lp.tokens) == 3
    assert lp.top_logprobs is not None and all(len(t) <= 2 for t in lp.top_logprobs)
    assert lp.text_offset == [0, len(lp.tokens[0]), len(lp.tokens[0]) + len(lp.tokens[1])]
    assert "".join(lp.tokens) == r.choices[0].text


def test_stream(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    kwargs = dict(model=engine.model_id, prompt="Once upon a time", max_tokens=5, temperature=0)
    whole = client.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = list(
        client.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})  # type: ignore[call-overload]
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_unsupported_options_are_400(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    for extra in ({"suffix": "end"}, {"best_of": 3}, {"echo": True, "logprobs": 1}):
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model=engine.model_id, prompt="a", max_tokens=1, **extra)  # type: ignore[call-overload]
        assert err.value.param in extra
    with pytest.raises(openai.BadRequestError) as empty:
        client.completions.create(model=engine.model_id, prompt=[], max_tokens=1)
    assert empty.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as vocab:
        client.completions.create(model=engine.model_id, prompt=[10**7], max_tokens=1)
    assert "vocabulary" in vocab.value.message
