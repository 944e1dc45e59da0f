from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from augury.llm.async_engine import AsyncEngine
from augury.llm.engine import LLMEngine
from augury.llm.sampling_params import SamplingParams


def test_concurrent_streams_and_abort(make_tiny_engine: Callable[..., LLMEngine]) -> None:
    engine = make_tiny_engine()
    aeng = AsyncEngine(engine)
    aeng.start()
    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)

    async def collect(prompt: list[int]) -> list[int]:
        ids: list[int] = []
        async for out in aeng.generate(prompt, params):
            for d in out.outputs:
                ids += d.token_ids
        return ids

    async def scenario() -> None:
        results = await asyncio.gather(*(collect([100 + i, 7, 8]) for i in range(6)))
        assert all(len(r) == 12 for r in results)
        # The same prompts one by one give the same tokens.
        for i in range(2):
            assert await collect([100 + i, 7, 8]) == results[i]
        # Leaving a stream early aborts it and frees its blocks.
        long = SamplingParams(max_tokens=500, ignore_eos=True)
        stream = aeng.generate([5, 6, 7], long, request_id="quit-early")
        async for _ in stream:
            break
        await stream.aclose()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if aeng.stats().running == 0 and aeng.stats().kv_blocks_used == 0:
                break
        assert aeng.stats().kv_blocks_used == 0
        with pytest.raises(ValueError, match="outside the vocabulary"):
            async for _ in aeng.generate([10**6], params):
                pass

    try:
        asyncio.run(scenario())
    finally:
        aeng.shutdown()


def test_load_builds_and_steps_in_one_thread(make_tiny_engine: Callable[..., LLMEngine]) -> None:
    """AsyncEngine.load runs the build in the thread that then steps the engine (one OpenMP
    team for both), returns once built, and hands back a failed build's exception."""
    import threading

    built_in: list[threading.Thread] = []

    def build() -> LLMEngine:
        built_in.append(threading.current_thread())
        return make_tiny_engine()

    aeng = AsyncEngine.load(build)
    try:
        assert aeng.running and aeng._thread is built_in[0]
        assert built_in[0] is not threading.current_thread()
        params = SamplingParams(temperature=0.0, max_tokens=5, ignore_eos=True)

        async def first() -> int:
            count = 0
            async for out in aeng.generate([100, 7, 8], params):
                count += sum(len(d.token_ids) for d in out.outputs)
            return count

        assert asyncio.run(first()) == 5
    finally:
        aeng.shutdown()
    assert not aeng.running

    def broken() -> LLMEngine:
        raise FileNotFoundError("no such model: nowhere.gguf")

    with pytest.raises(FileNotFoundError, match=r"nowhere\.gguf"):
        AsyncEngine.load(broken)
