"""The application on Ray Serve: same answers as the single-process server, load spread over
replicas and visible per replica, and a replica killed mid-load fails only its in-flight
requests, at once and with a retryable error, while later requests succeed.

The tests share one Ray instance; the replica-killing tests come last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.live_server import LiveServer
from tests.scale.conftest import MODEL, RayServer, by_deployment, wait_for_replicas

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

MODEL_ID = "SmolLM2-135M-Instruct"
CHATS = ["What is 2+2?", "Name a colour.", "Say hello in French.", "What is the capital of Peru?"]
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)


def chat(url: str, content: str, **extra: Any) -> str:
    answer = client(url).chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": content}],
        max_tokens=12,
        temperature=0,
        **extra,
    )
    return answer.choices[0].message.content or ""


def test_greedy_outputs_match_the_single_process_server(
    ray_server: RayServer, local_server: LiveServer
) -> None:
    for content in CHATS:
        assert chat(ray_server.url, content) == chat(local_server.url, content)
    for prompt in PROMPTS:
        ours = client(ray_server.url).completions.create(
            model=MODEL_ID, prompt=prompt, max_tokens=12, temperature=0, logprobs=2
        )
        theirs = client(local_server.url).completions.create(
            model=MODEL_ID, prompt=prompt, max_tokens=12, temperature=0, logprobs=2
        )
        assert ours.choices[0].text == theirs.choices[0].text
        assert ours.usage == theirs.usage
        assert ours.choices[0].logprobs is not None and theirs.choices[0].logprobs is not None
        assert ours.choices[0].logprobs.tokens == theirs.choices[0].logprobs.tokens


def test_streaming_through_ray_serve(ray_server: RayServer, local_server: LiveServer) -> None:
    stream = client(ray_server.url).chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": CHATS[2]}],
        max_tokens=12,
        temperature=0,
        stream=True,
    )
    chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([c for c in chunks if c]) > 1  # delivered piece by piece, not in one block
    assert "".join(chunks) == chat(local_server.url, CHATS[2])


def infer_body(rows: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}  # fmt: skip


def test_predictions_match_the_single_process_server(
    ray_server: RayServer, local_server: LiveServer
) -> None:
    rows = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32) * 3
    path = f"/v2/models/{MODEL}/infer"
    ours = httpx.post(ray_server.url + path, json=infer_body(rows), timeout=60)
    theirs = httpx.post(local_server.url + path, json=infer_body(rows), timeout=60)
    assert ours.status_code == theirs.status_code == 200
    assert ours.json()["outputs"] == theirs.json()["outputs"]
    bad = httpx.post(ray_server.url + path, json=infer_body(rows[:, :3]), timeout=60)
    assert bad.status_code == 400 and "shape" in bad.json()["error"]


async def _chats(url: str, n: int, max_tokens: int) -> list[httpx.Response]:
    body = {"model": MODEL_ID, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:

        def one(i: int) -> Any:
            messages = [{"role": "user", "content": f"Count to {i}"}]
            return http.post("/v1/chat/completions", json={**body, "messages": messages})

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _infers(url: str, n: int) -> list[httpx.Response]:
    rows = np.ones((2, 4), np.float32)
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        sem = asyncio.Semaphore(8)

        async def one() -> httpx.Response:
            async with sem:
                return await http.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows))

        return list(await asyncio.gather(*(one() for _ in range(n))))


def test_concurrent_clients_spread_over_both_replicas(ray_server: RayServer) -> None:
    before = by_deployment(ray_server, "llm")
    answers = asyncio.run(_chats(ray_server.url, 8, 6))
    assert [a.status_code for a in answers] == [200] * 8
    after = by_deployment(ray_server, "llm")
    served = {r: after[r]["requests_total"] - before[r]["requests_total"] for r in before}
    assert sum(served.values()) == 8 and all(n > 0 for n in served.values()), served

    model = f"model-{MODEL}"
    before = by_deployment(ray_server, model)
    answers = asyncio.run(_infers(ray_server.url, 200))
    assert {a.status_code for a in answers} == {200}
    after = by_deployment(ray_server, model)
    batches = {r: after[r]["requests_total"] - before[r]["requests_total"] for r in before}
    assert all(n > 0 for n in batches.values()), batches


def test_metrics_and_replicas_route_report_per_replica_load(ray_server: RayServer) -> None:
    text = httpx.get(f"{ray_server.url}/metrics", timeout=30).text
    assert 'augury_replicas{deployment="llm"} 2.0' in text
    assert f'augury_replicas{{deployment="model-{MODEL}"}} 2.0' in text
    for replica in by_deployment(ray_server, "llm"):
        labels = f'{{deployment="llm",replica="{replica}"}}'
        assert f"augury_replica_requests_total{labels}" in text
        assert f"augury_replica_kv_cache_usage_ratio{labels}" in text
    llm = by_deployment(ray_server, "llm")
    assert all(e["kv_usage"] is not None and e["actor_name"] for e in llm.values())
    # The deployment's summed engine figures still feed the dashboard's /api/stats.
    stats = httpx.get(f"{ray_server.url}/api/stats", timeout=30).json()
    generated = sum(e["generation_tokens_total"] for e in llm.values())
    assert stats["models"][0]["generation_tokens_total"] == pytest.approx(generated, abs=64)


def generated_tokens(server: RayServer) -> int:
    return sum(e["generation_tokens_total"] for e in by_deployment(server, "llm").values())


def test_client_leaving_a_stream_aborts_it_on_the_replica(ray_server: RayServer) -> None:
    before = generated_tokens(ray_server)
    messages = [{"role": "user", "content": "Tell me a story."}]
    body = {"model": MODEL_ID, "max_tokens": 400, "temperature": 0, "ignore_eos": True,
            "stream": True, "messages": messages}  # fmt: skip
    http = httpx.Client(base_url=ray_server.url, timeout=120)
    with http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        next(response.iter_lines())  # generation has started; now leave
    deadline = time.monotonic() + 60
    while True:
        llm = by_deployment(ray_server, "llm").values()
        if all(e["ongoing"] == 0 and e["running"] == 0 for e in llm):
            break
        assert time.monotonic() < deadline, f"the abandoned request still runs: {list(llm)}"
        time.sleep(0.2)
    time.sleep(1.0)  # a report or two later
    settled = generated_tokens(ray_server)
    assert settled - before < 400, "the request ran to its end: leaving did not abort it"
    time.sleep(1.0)
    assert generated_tokens(ray_server) == settled  # nothing generates on for nobody


async def _load_and_kill(server: RayServer, n: int) -> tuple[list[httpx.Response], list[str]]:
    """n long requests (half streaming) on both replicas; one replica is killed meanwhile."""
    import ray

    body = {"model": MODEL_ID, "max_tokens": 64, "temperature": 0, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell me a story."}]}  # fmt: skip
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as http:

        async def plain() -> httpx.Response:
            return await http.post("/v1/chat/completions", json=body)

        async def streamed() -> tuple[int, str]:
            async with http.stream("POST", "/v1/chat/completions",
                                   json={**body, "stream": True}) as response:  # fmt: skip
                return response.status_code, (await response.aread()).decode()

        plains = [asyncio.ensure_future(plain()) for _ in range(n // 2)]
        streams = [asyncio.ensure_future(streamed()) for _ in range(n - n // 2)]
        victim = await asyncio.to_thread(_busy_replica, server)
        ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
        # No hang: everything in flight ends well within the timeout.
        done = await asyncio.wait_for(asyncio.gather(*plains), 240)
        events = await asyncio.wait_for(asyncio.gather(*streams), 240)
    return done, [f"{status} {text}" for status, text in events] + [victim["replica"]]


def _busy_replica(server: RayServer) -> dict[str, Any]:
    """An LLM replica once both have requests running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        llm = by_deployment(server, "llm")
        if len(llm) == 2 and all(e["ongoing"] > 0 for e in llm.values()):
            return next(iter(llm.values()))
        time.sleep(0.1)
    raise AssertionError("the load never reached both replicas")


def test_killed_llm_replica_fails_its_requests_clearly_and_later_ones_succeed(
    ray_server: RayServer,
) -> None:
    plains, streamed = asyncio.run(_load_and_kill(ray_server, 8))
    victim = streamed.pop()
    failed = [r for r in plains if r.status_code != 200]
    for r in failed:
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        error = r.json()["error"]
        assert error["code"] == "replica_failed" and "retry" in error["message"]
    # A stream fails with a 503 before it starts, or in-band (an error event) after.
    failed_streams = [s for s in streamed if '"replica_failed"' in s]
    for s in streamed:
        if s.startswith("503 "):
            assert s in failed_streams and json.loads(s[4:])["error"]["type"] == (
                "service_unavailable_error"
            )
        else:
            assert s.startswith("200 ") and s.rstrip().endswith("data: [DONE]")
            assert ('"error"' in s) == (s in failed_streams)
    assert failed or failed_streams, "no in-flight request saw the replica die"
    assert len(failed) + len(failed_streams) < 8, "the surviving replica served nothing"

    # Requests routed after the failure succeed at once (the surviving replica)...
    assert {r.status_code for r in asyncio.run(_chats(ray_server.url, 4, 4))} == {200}
    # ... and Ray replaces the dead replica.
    wait_for_replicas(ray_server, {"llm": 2}, timeout=300, exclude=frozenset({victim}))
    assert {r.status_code for r in asyncio.run(_chats(ray_server.url, 4, 4))} == {200}


def test_killed_model_replica_answers_503_or_succeeds_never_hangs(ray_server: RayServer) -> None:
    import ray

    model = f"model-{MODEL}"
    victim = next(iter(by_deployment(ray_server, model).values()))

    async def run() -> list[httpx.Response]:
        load = asyncio.ensure_future(_infers(ray_server.url, 400))
        await asyncio.sleep(0.3)
        ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
        return await asyncio.wait_for(load, 240)

    answers = asyncio.run(run())
    for answer in answers:
        assert answer.status_code in (200, 503), answer.text
        if answer.status_code == 503:
            assert "failed during this batch" in json.loads(answer.text)["error"]
    assert answers[-1].status_code == 200
    assert {r.status_code for r in asyncio.run(_infers(ray_server.url, 20))} == {200}
    wait_for_replicas(ray_server, {model: 2}, timeout=300, exclude=frozenset({victim["replica"]}))


def test_autoscaling_adds_replicas_under_load_within_bounds(ray_server: RayServer) -> None:
    """Redeployed with --autoscale 1,2 (target: 1 ongoing request per replica), the LLM runs
    one replica when idle, a second under load, never a third, and one again after."""
    from augury.scale.app import start

    scale = dataclasses.replace(
        ray_server.scale, autoscale=(1, 2), target_ongoing_requests=1,
        upscale_delay_s=0, downscale_delay_s=2,
    )  # fmt: skip
    start(ray_server.config, scale)  # updates the running application in place
    wait_for_replicas(ray_server, {"llm": 1}, timeout=300)
    seen = asyncio.run(_load_until_two_replicas(ray_server, clients=6, timeout=300))
    assert max(seen) == 2, f"replica counts seen under load: {seen}"
    wait_for_replicas(ray_server, {"llm": 1}, timeout=300)


async def _load_until_two_replicas(server: RayServer, clients: int, timeout: float) -> list[int]:
    """Replica counts seen while `clients` send requests back to back, until 2 replicas have
    run for 5 more seconds."""
    stop = asyncio.Event()
    body = {"model": MODEL_ID, "max_tokens": 32, "temperature": 0, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell me a story."}]}  # fmt: skip

    async def client(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            response = await http.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text

    seen: list[int] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as http:
        tasks = [asyncio.ensure_future(client(http)) for _ in range(clients)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len([n for n in seen if n >= 2]) < 6:
            await asyncio.sleep(1.0)
            seen.append(len(await asyncio.to_thread(by_deployment, server, "llm")))
        stop.set()
        await asyncio.gather(*tasks)
    return seen
