"""Chat completions through the official OpenAI SDK against the live server."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from augury.server.engine_client import LocalEngineClient
from tests.server.conftest import KEY, LiveServer

pytestmark = pytest.mark.anyio

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0) as c:
        yield c


def test_greedy_chat_has_openai_shape(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    r = client.chat.completions.create(
        model=engine.model_id,
        messages=QUESTION,
        max_tokens=6,
        temperature=0,  # type: ignore[arg-type]
    )
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.model == engine.model_id and r.created > 1_600_000_000
    (choice,) = r.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.content and choice.finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + 6


def test_stream_matches_non_stream_and_reports_usage(
    client: openai.OpenAI, engine: LocalEngineClient
) -> None:
    kwargs = dict(model=engine.model_id, messages=QUESTION, max_tokens=6, temperature=0)
    whole = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = list(
        client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )  # type: ignore[call-overload]
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])


def test_stop_string_ends_the_text(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    r = client.chat.completions.create(
        model=engine.model_id,
        messages=QUESTION,
        max_tokens=16,
        temperature=0,
        stop=[" math"],  # type: ignore[arg-type]
    )
    choice = r.choices[0]
    assert choice.finish_reason == "stop" and " math" not in (choice.message.content or "")


def test_max_completion_tokens_wins(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    r = client.chat.completions.create(
        model=engine.model_id,
        messages=QUESTION,
        max_tokens=9,
        max_completion_tokens=2,  # type: ignore[arg-type]
    )
    assert r.usage is not None and r.usage.completion_tokens == 2


def test_logprobs_and_top_logprobs(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    r = client.chat.completions.create(
        model=engine.model_id, messages=QUESTION, max_tokens=3, temperature=0,  # type: ignore[arg-type]
        logprobs=True, top_logprobs=2,
    )  # fmt: skip
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 3
    for item in content:
        assert item.logprob <= 0 and len(item.top_logprobs) == 2
        assert item.top_logprobs[0].logprob >= item.top_logprobs[1].logprob
        assert item.token == item.top_logprobs[0].token  # greedy picks the most likely
        assert bytes(item.bytes or []).decode() == item.token


def test_sampling_fields_and_vllm_extras_are_accepted(
    client: openai.OpenAI, engine: LocalEngineClient
) -> None:
    r = client.chat.completions.create(
        model=engine.model_id, messages=QUESTION, max_tokens=3, temperature=0.7, top_p=0.9,  # type: ignore[arg-type]
        presence_penalty=0.5, frequency_penalty=0.5, user="u-1", seed=3,
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1},
    )  # fmt: skip
    assert r.usage is not None and r.usage.completion_tokens == 3


def test_logit_bias_forces_a_token(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    token = engine.tokenize("Hello")[0]
    r = client.chat.completions.create(
        model=engine.model_id, messages=QUESTION, max_tokens=3, temperature=0,  # type: ignore[arg-type]
        logit_bias={str(token): 100}, logprobs=True,
    )  # fmt: skip
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None
    assert [c.token for c in content] == engine.token_texts([token]) * 3


async def test_async_client_n_and_seed(live: LiveServer, engine: LocalEngineClient) -> None:
    async with openai.AsyncOpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0) as c:
        kwargs = dict(model=engine.model_id, messages=QUESTION, max_tokens=4, n=2, seed=11)
        first = await c.chat.completions.create(**kwargs)  # type: ignore[call-overload]
        again = await c.chat.completions.create(**kwargs)  # type: ignore[call-overload]
        stream = await c.chat.completions.create(**kwargs, stream=True)  # type: ignore[call-overload]
        streamed = ["", ""]
        async for chunk in stream:
            for choice in chunk.choices:
                streamed[choice.index] += choice.delta.content or ""
    assert [ch.index for ch in first.choices] == [0, 1]
    texts = [ch.message.content for ch in first.choices]
    assert texts == [ch.message.content for ch in again.choices] == streamed
    assert first.usage.completion_tokens == 8


def test_errors_surface_as_sdk_exceptions(
    client: openai.OpenAI, live: LiveServer, engine: LocalEngineClient
) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=engine.model_id, messages=QUESTION, temperature=5)  # type: ignore[arg-type]
    assert bad.value.param == "temperature" and "2.0" in bad.value.message
    with pytest.raises(openai.BadRequestError) as long:
        client.chat.completions.create(model=engine.model_id, messages=QUESTION, max_tokens=9000)  # type: ignore[arg-type]
    assert long.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=engine.model_id, messages=QUESTION, n=1000, stream=True
        )  # type: ignore[arg-type]
    wrong = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-wrong-key-000", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_models_routes(client: openai.OpenAI, engine: LocalEngineClient) -> None:
    (card,) = client.models.list().data
    assert card.id == engine.model_id and card.object == "model"
    assert client.models.retrieve(engine.model_id).id == engine.model_id
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
