"""The local EngineClient: protocol conformance and robustness to abandoned event loops."""

from __future__ import annotations

import asyncio

from augury.llm.sampling_params import SamplingParams
from augury.server.engine_client import EngineClient, LocalEngineClient
from tests.server.conftest import wait_idle
from tests.server.fakes import FakeEngine


def test_implementations_satisfy_the_protocol(engine: LocalEngineClient) -> None:
    assert isinstance(engine, EngineClient)
    assert isinstance(FakeEngine(), EngineClient)


def test_helpers(engine: LocalEngineClient) -> None:
    ids = engine.tokenize("Hello world")
    assert "".join(engine.token_texts(ids)) == "Hello world"
    prompt = engine.apply_chat_template([{"role": "user", "content": "hi"}])
    assert "hi" in prompt and engine.max_model_len == 8192


def test_a_closed_client_loop_does_not_kill_the_engine(engine: LocalEngineClient) -> None:
    loop = asyncio.new_event_loop()
    params = SamplingParams(max_tokens=50, ignore_eos=True)
    stream = engine.generate("Tell me a story", params)
    loop.run_until_complete(anext(stream))
    loop.close()  # the request's reader is gone without closing it
    wait_idle(engine)  # aborted when its next output could not be delivered

    async def again() -> bool:
        async for out in engine.generate("Hi", SamplingParams(max_tokens=2)):
            if out.finished:
                return True
        return False

    assert asyncio.run(again())
