"""The dashboard's tables in headless Chromium, fed by the real components: a batch submitted
through the OpenAI Batch API (files + batches) climbs to completion in the jobs table, and a
session fed over the /v1/streams WebSocket shows in the streams table with its rates."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from augury.server.app import create_app
from augury.server.engine_client import LocalEngineClient
from augury.stream.client import StreamClient
from tests.server.conftest import LiveServer, start_server, wait_idle
from tests.web.conftest import KEY, open_with_key, web_config

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(
    web_engine: LocalEngineClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    app = create_app(web_config(tmp_path_factory.mktemp("activity")), engines=[web_engine])
    live = start_server(app)
    yield live
    live.stop()


def submit_batch(server: LiveServer, engine: LocalEngineClient, rows: int) -> str:
    """Upload `rows` chat requests and start a batch over them; returns the batch id."""
    lines = [
        json.dumps({
            "custom_id": f"row-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": engine.model_id, "max_tokens": 8, "temperature": 0,
                     "messages": [{"role": "user", "content": f"Say the number {i}."}]},
        })
        for i in range(rows)
    ]  # fmt: skip
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        upload = client.post(
            "/v1/files",
            files={"file": ("rows.jsonl", "\n".join(lines).encode())},
            data={"purpose": "batch"},
        )
        upload.raise_for_status()
        batch = client.post(
            "/v1/batches",
            json={"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions",
                  "completion_window": "24h"},
        )  # fmt: skip
        batch.raise_for_status()
        batch_id: str = batch.json()["id"]
    return batch_id


def bar_state(row: Locator) -> tuple[float, float, str]:
    """(value, max, aria-valuetext) of a job row's progress bar."""
    value, top, text = row.locator("progress").evaluate(
        "p => [p.value, p.max, p.getAttribute('aria-valuetext')]"
    )
    return float(value), float(top), str(text)


def cell(row: Locator, column: str) -> str:
    """The text of a row's cell under the header named `column`."""
    headers = row.locator("xpath=ancestor::table//th").all_inner_texts()
    return row.locator("td").nth(headers.index(column)).inner_text()


def test_a_batch_job_climbs_to_completion_in_the_jobs_table(
    page: Page, server: LiveServer, web_engine: LocalEngineClient
) -> None:
    open_with_key(page, server.url + "/?poll=500#dashboard")
    expect(page.locator("#jobs .empty")).to_contain_text("No batch jobs yet")
    rows = 160  # five chunks of 32: the counts move several times on the way
    batch_id = submit_batch(server, web_engine, rows)
    row = page.locator(f"#jobs tr[data-id='{batch_id}']")
    expect(row).to_be_visible()
    progress = row.locator("progress")
    expect(progress).to_have_attribute("aria-label", f"Progress of {batch_id}")

    seen: list[float] = []
    deadline = time.monotonic() + 180
    while row.get_attribute("data-status") != "completed":
        if row.get_attribute("data-status") == "in_progress":
            seen.append(bar_state(row)[0])
        assert time.monotonic() < deadline, f"batch stuck: {cell(row, 'Status')}"
        time.sleep(0.2)
    expect(row.locator(".count")).to_have_text(f"{rows}/{rows}", timeout=5_000)
    value, top, text = bar_state(row)
    assert value == top == rows
    assert text == f"{rows} of {rows} requests (100%)"
    assert seen and seen == sorted(seen), f"progress must only grow: {seen}"
    assert min(seen) < rows, "the bar never showed the batch part way"
    assert float(cell(row, "Rows/s")) > 0
    assert re.fullmatch(r"\d+ s|\d+ min \d+ s", cell(row, "Time"))

    batch = httpx.get(f"{server.url}/v1/batches/{batch_id}", headers=AUTH).json()
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": rows, "completed": rows, "failed": 0}
    wait_idle(web_engine, timeout=10)


async def _feed(url: str, opened: dict[str, Any], stop: threading.Event) -> None:
    """Open a session, send 20 events every 50 ms until `stop`, then drop the connection
    (no close frame: the server keeps the session resumable)."""
    client = StreamClient(
        url, "zscore", ["x", "y"], window={"kind": "count", "size": 10, "stride": 10},
        api_key=KEY,
    )  # fmt: skip
    await client.open()
    opened["id"] = client.session_id

    async def drain() -> None:
        while True:
            await client.recv()

    reader = asyncio.create_task(drain())
    t = 0
    try:
        while not stop.is_set():
            await client.send(
                [{"t": (t + i) * 0.01, "values": {"x": float(i % 7), "y": 1.0}} for i in range(20)]
            )
            t += 20
            await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        assert client.ws is not None
        await client.ws.close()


def chat_burst(server: LiveServer, engine: LocalEngineClient, n: int = 4) -> None:
    """`n` concurrent chat requests, waited for (latency points for the screenshot)."""
    body = {"model": engine.model_id, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Tell me about the sea."}]}  # fmt: skip

    def one() -> None:
        httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def number(text: str) -> float:
    return float(text.replace(",", "")) if text not in ("–", "") else float("nan")


def test_a_streaming_session_shows_with_its_rates(
    page: Page,
    server: LiveServer,
    web_engine: LocalEngineClient,
    screenshot_dir: Path,
) -> None:
    open_with_key(page, server.url + "/?poll=500#dashboard")
    opened: dict[str, Any] = {}
    stop = threading.Event()
    ws_url = server.url.replace("http://", "ws://") + "/v1/streams"
    feeder = threading.Thread(target=asyncio.run, args=(_feed(ws_url, opened, stop),))
    feeder.start()
    busy = submit_batch(server, web_engine, 160)  # a job in progress for the screenshot
    try:
        deadline = time.monotonic() + 20
        while "id" not in opened:
            assert feeder.is_alive() and time.monotonic() < deadline, "the session did not open"
            time.sleep(0.05)
        row = page.locator(f"#streams tr[data-id='{opened['id']}']")
        expect(row).to_have_attribute("data-state", "live")
        expect(row).to_contain_text("zscore (x, y)")
        deadline = time.monotonic() + 30
        while not number(cell(row, "Events/s")) > 0 or not number(cell(row, "Results/s")) > 0:
            assert time.monotonic() < deadline, f"no rate shown: {row.inner_text()}"
            time.sleep(0.2)
        # 20 events each 50 ms at best: the rate cannot exceed 400/s; windows are 10 events.
        assert number(cell(row, "Events/s")) <= 400
        assert number(cell(row, "Results out")) >= 1
        assert number(cell(row, "Dropped")) == 0
        api = httpx.get(f"{server.url}/api/streams", headers=AUTH).json()
        (item,) = [s for s in api["data"] if s["id"] == opened["id"]]
        assert item["state"] == "live" and item["events_in"] >= number(cell(row, "Events in"))
        jobs = page.locator(f"#jobs tr[data-id='{busy}']")
        expect(jobs).to_have_attribute("data-status", re.compile("validating|in_progress"))
        chat_burst(server, web_engine)
        page.wait_for_timeout(1500)  # let the charts gather a few points of the load
        # The README's docs/screenshot-dashboard.png is a copy of this one.
        page.screenshot(path=screenshot_dir / "dashboard-activity.png", full_page=True)
    finally:
        stop.set()
        feeder.join(10)
        httpx.post(f"{server.url}/v1/batches/{busy}/cancel", headers=AUTH)

    # Disconnected without a close frame: resumable, nothing flowing.
    expect(row).to_have_attribute("data-state", "resumable", timeout=15_000)
    expect(row.locator("td").nth(-2)).to_have_text("0.0")  # Events/s
    jobs = page.locator(f"#jobs tr[data-id='{busy}']")
    expect(jobs).to_have_attribute("data-status", re.compile("cancelled|completed"), timeout=60_000)
    wait_idle(web_engine, timeout=10)


def test_the_tables_fit_a_phone(
    browser: Any, server: LiveServer, web_engine: LocalEngineClient, screenshot_dir: Path
) -> None:
    submit_batch(server, web_engine, 2)
    opened: dict[str, Any] = {}
    stop = threading.Event()
    ws_url = server.url.replace("http://", "ws://") + "/v1/streams"
    feeder = threading.Thread(target=asyncio.run, args=(_feed(ws_url, opened, stop),))
    feeder.start()
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        open_with_key(page, server.url + "/?poll=500#dashboard")
        expect(page.locator("#jobs table")).to_be_visible()
        expect(page.locator("#streams tbody tr").first).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow}px wider than the window"
        # A table wider than the phone scrolls inside its own region, reachable by keyboard.
        region = page.locator("#streams")
        assert region.evaluate("r => r.scrollWidth > r.clientWidth")
        assert region.get_attribute("tabindex") == "0" and region.get_attribute("role") == "region"
        page.locator(".dash-lists").screenshot(path=screenshot_dir / "phone-dashboard-lists.png")
    finally:
        context.close()
        stop.set()
        feeder.join(10)
    wait_idle(web_engine, timeout=30)
