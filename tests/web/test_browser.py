"""End to end in headless Chromium: the chat playground streams and stops, the dashboard's
charts move under load, and every section fits a phone. The predict playground and the
dashboard's jobs and streams tables have their own modules. Screenshots land in
tests/artifacts/."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from augury.server.engine_client import LocalEngineClient
from tests.server.conftest import LiveServer, wait_idle
from tests.web.conftest import KEY, open_with_key

if TYPE_CHECKING:
    from playwright.sync_api import Page

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect


def answer_length(page: Page) -> int:
    return len(page.locator(".message.assistant .content").last.inner_text())


def test_chat_asks_for_key_and_streams_a_multi_turn_conversation(
    page: Page, web_server: LiveServer, screenshot_dir: Path
) -> None:
    urls: list[str] = []
    bodies: list[dict[str, Any]] = []

    def record(request: Any) -> None:
        urls.append(request.url)
        if request.url.endswith("/v1/chat/completions"):
            bodies.append(json.loads(request.post_data or "{}"))

    page.on("request", record)
    open_with_key(page, web_server.url + "/#chat")
    expect(page.locator("#chat-model option")).to_have_count(1)
    assert page.evaluate("sessionStorage.getItem('augury.apiKey')") == KEY
    page.fill("#chat-system", "You are a concise assistant.")
    page.fill("#chat-max-tokens", "48")
    page.fill("#chat-input", "Name three rivers in Europe.")
    page.press("#chat-input", "Enter")

    answer = page.locator(".message.assistant").last
    # Streamed: text shows while the answer is still running, and grows.
    expect(answer).to_have_attribute("data-state", "streaming")
    expect(answer.locator(".content")).to_have_text(re.compile(r"\S"))
    seen_while_streaming = answer.get_attribute("data-state") == "streaming"
    expect(answer).to_have_attribute("data-state", "done")
    assert seen_while_streaming
    stats = answer.locator(".stats").inner_text()
    assert "TTFT" in stats and "tok/s" in stats, stats
    first_answer = answer.locator(".content").inner_text()
    assert first_answer.strip()

    page.fill("#chat-input", "Which of them is the longest?")
    page.click("#chat-send")
    expect(page.locator(".message.assistant").last).to_have_attribute("data-state", "done")
    roles = [m["role"] for m in bodies[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert bodies[-1]["messages"][2]["content"] == first_answer
    assert all(u.startswith(web_server.url) for u in urls), "the page must not leave its origin"
    page.screenshot(path=screenshot_dir / "chat.png")


def test_stop_button_aborts_the_request_on_the_server(
    page: Page, web_server: LiveServer, web_engine: LocalEngineClient
) -> None:
    open_with_key(page, web_server.url + "/#chat")
    page.fill("#chat-max-tokens", "400")
    page.fill("#chat-input", "Write a long story about a dragon who learns to sail.")
    page.click("#chat-send")
    expect(page.locator(".message.assistant .content")).to_have_text(re.compile(r".{21}"))
    assert web_engine.stats().running == 1
    page.click("#chat-stop")
    answer = page.locator(".message.assistant").last
    expect(answer).to_have_attribute("data-state", "stopped")
    assert "stopped" in answer.locator(".stats").inner_text()
    wait_idle(web_engine, timeout=5)  # running 1 -> 0, cache blocks freed
    stopped_at = answer_length(page)
    time.sleep(0.5)
    assert answer_length(page) == stopped_at
    expect(page.locator("#chat-send")).to_be_enabled()


def _load(url: str, engine: LocalEngineClient, stop: threading.Event) -> None:
    """Four concurrent chat requests at a time until `stop`."""
    body = {
        "model": engine.model_id,
        "messages": [{"role": "user", "content": "Tell me about the moon."}],
        "max_tokens": 32,
    }
    headers = {"Authorization": f"Bearer {KEY}"}

    def worker() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            while not stop.is_set():
                client.post("/v1/chat/completions", json=body).raise_for_status()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def legend_value(page: Page, chart: str, series: str) -> str:
    figure = page.locator("figure.chart", has_text=chart)
    return figure.locator(f".value[data-series='{series}']").inner_text()


def number(text: str) -> float:
    head = text.split()[0]
    return float(head) if head not in ("–", "") else float("nan")


def test_dashboard_charts_follow_the_load(
    page: Page, web_server: LiveServer, web_engine: LocalEngineClient, screenshot_dir: Path
) -> None:
    open_with_key(page, web_server.url + "/?poll=500#dashboard")
    expect(page.locator("#jobs .empty")).to_contain_text("No batch jobs")
    expect(page.locator("#streams .empty")).to_contain_text("No streaming sessions")
    stop = threading.Event()
    load = threading.Thread(target=_load, args=(web_server.url, web_engine, stop), daemon=True)
    load.start()
    try:
        peak_running = 0.0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            peak_running = max(peak_running, number(legend_value(page, "Requests", "running")))
            generated = number(legend_value(page, "Throughput", "generated"))
            ttft = number(legend_value(page, "Time to first token", "p50"))
            rate = number(legend_value(page, "Request rate per model", web_engine.model_id))
            if peak_running >= 2 and generated > 0 and ttft > 0 and rate > 0:
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"dashboard did not follow the load: running peak {peak_running}")
        itl = number(legend_value(page, "Inter-token latency", "p90"))
        kv = number(legend_value(page, "KV cache usage", "used"))
        assert itl > 0 and kv >= 0
        points = int(page.locator("figure.chart").first.get_attribute("data-points") or 0)
        assert points >= 2
        page.screenshot(path=screenshot_dir / "dashboard.png", full_page=True)
    finally:
        stop.set()
        load.join(60)
    wait_idle(web_engine, timeout=10)


@pytest.mark.parametrize("tab", ["chat", "predict", "dashboard"])
def test_phone_sized_window_has_no_sideways_scrolling(
    browser: Any, web_server: LiveServer, screenshot_dir: Path, tab: str
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        open_with_key(page, f"{web_server.url}/#{tab}")
        expect(page.locator(f"#panel-{tab}")).to_be_visible()
        expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-selected", "true")
        page.wait_for_timeout(300)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{tab}: {overflow}px wider than the window"
        page.screenshot(path=screenshot_dir / f"phone-{tab}.png")
    finally:
        context.close()


def test_tabs_follow_the_arrow_keys(page: Page, web_server: LiveServer) -> None:
    open_with_key(page, web_server.url + "/#chat")
    page.focus("#tab-chat")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#panel-predict")).to_be_visible()
    expect(page.locator("#tab-predict")).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#panel-chat")).to_be_visible()
