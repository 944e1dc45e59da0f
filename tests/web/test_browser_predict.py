"""The predict playground in headless Chromium against the real KServe v2 router, serving a
model repository of small real models (see conftest.model_repository): the form comes from
each model's declared inputs, and the bars show what the API answers for the same input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from augury.server.app import create_app
from augury.server.config import ServerConfig
from tests.predict.helpers import LINEAR_W
from tests.server.conftest import LiveServer, start_server
from tests.server.fakes import FakeEngine
from tests.web.conftest import KEY, open_with_key

if TYPE_CHECKING:
    from playwright.sync_api import Page

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect


def infer_bodies(page: Page) -> list[dict[str, Any]]:
    """Every infer body the page sends, in order (filled while the page runs)."""
    bodies: list[dict[str, Any]] = []

    def record(request: Any) -> None:
        if request.url.endswith("/infer"):
            bodies.append(json.loads(request.post_data or "{}"))

    page.on("request", record)
    return bodies


def api_infer(server: LiveServer, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The KServe answer to `body`, asked directly (not through the page)."""
    response = httpx.post(
        f"{server.url}/v2/models/{model}/infer",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def output(answer: dict[str, Any], name: str) -> list[Any]:
    (found,) = [o for o in answer["outputs"] if o["name"] == name]
    data: list[Any] = found["data"]
    return data


def shown_bars(page: Page) -> list[tuple[str, float]]:
    """(label, percentage) of each bar, top first."""
    bars = page.locator("#predict-result .bars li")
    labels = bars.evaluate_all("items => items.map(li => li.dataset.label)")
    values = page.locator("#predict-result .bars .bar-value").all_inner_texts()
    assert all(v.endswith("%") for v in values), values
    return [(label, float(v.removesuffix("%"))) for label, v in zip(labels, values, strict=True)]


def assert_bars_match(page: Page, labels: list[str], probabilities: list[float]) -> None:
    """The page draws the top five classes, highest first, each to 0.1 percent."""
    pairs = sorted(zip(labels, probabilities, strict=True), key=lambda p: -p[1])[:5]
    shown = shown_bars(page)
    assert [label for label, _ in shown] == [label for label, _ in pairs]
    for (_, percent), (_, p) in zip(shown, pairs, strict=True):
        assert percent == pytest.approx(p * 100, abs=0.051)


def draw_seven(page: Page) -> None:
    canvas = page.locator("canvas.draw")
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 50, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 175, box["y"] + 40, steps=8)
    page.mouse.move(box["x"] + 95, box["y"] + 195, steps=8)
    page.mouse.up()


def test_a_drawn_digit_is_classified_by_the_real_model(
    page: Page, web_server: LiveServer, screenshot_dir: Path
) -> None:
    bodies = infer_bodies(page)
    open_with_key(page, web_server.url + "/#predict")
    options = page.locator("#predict-model option")
    expect(options).to_have_count(2)
    assert sorted(options.all_inner_texts()) == ["digits", "linear"]
    page.select_option("#predict-model", "digits")
    expect(page.locator("#predict-description")).to_contain_text("image BYTES")
    draw_seven(page)
    page.click("#predict-run")
    expect(page.locator("#predict-result")).to_have_attribute("data-state", "done")

    (sent,) = bodies
    (image,) = sent["inputs"]
    assert image["name"] == "image" and image["datatype"] == "BYTES" and image["shape"] == [1]
    answer = api_infer(web_server, "digits", sent)
    label = output(answer, "label")[0]
    expect(page.locator("#predict-result .headline")).to_have_text(f"Predicted: {label}")
    probabilities = output(answer, "probabilities")
    assert_bars_match(page, [str(d) for d in range(10)], probabilities)
    assert shown_bars(page)[0][0] == label  # the top bar is the predicted class
    page.screenshot(path=screenshot_dir / "predict-digits.png")


def test_a_tabular_form_from_declared_inputs_matches_the_api(
    page: Page, web_server: LiveServer
) -> None:
    bodies = infer_bodies(page)
    open_with_key(page, web_server.url + "/#predict")
    page.select_option("#predict-model", "linear")
    # Declared input: FP32 [-1, 2] -> one number field per column.
    cells = page.locator("#predict-fields input[type='number']")
    expect(cells).to_have_count(2)
    cells.nth(0).fill("0.5")
    cells.nth(1).fill("2")
    page.click("#predict-run")
    expect(page.locator("#predict-result")).to_have_attribute("data-state", "done")

    assert bodies[-1]["inputs"] == [
        {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 2.0]}
    ]
    # An independent reference: the model is softmax(x @ W).
    scores = np.array([0.5, 2.0]) @ LINEAR_W
    reference = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    answer = api_infer(web_server, "linear", bodies[-1])
    probabilities = output(answer, "probabilities")
    np.testing.assert_allclose(probabilities, reference, rtol=1e-5)
    assert_bars_match(page, ["a", "b", "c"], probabilities)
    assert shown_bars(page)[0][0] == "b"
    expect(page.locator("#predict-result .headline")).to_have_text("Predicted: b")

    # Pasted values fill the cells.
    page.fill("#predict-fields textarea", "3, -1")
    expect(cells.nth(0)).to_have_value("3")
    expect(cells.nth(1)).to_have_value("-1")
    page.click("#predict-run")
    expect(page.locator("#predict-result .bars li").first).to_have_attribute("data-label", "a")
    assert bodies[-1]["inputs"][0]["data"] == [3.0, -1.0]


def test_predict_says_when_no_predictive_models_are_loaded(page: Page, tmp_path: Path) -> None:
    config = ServerConfig(batch_dir=None, model_repository=str(tmp_path / "missing"))
    server = start_server(create_app(config, engines=[FakeEngine()]))
    try:
        page.goto(server.url + "/#predict")
        expect(page.locator("#predict-empty")).to_be_visible()
        expect(page.locator("#predict-empty h2")).to_have_text("No predictive models loaded")
        expect(page.locator("#key-dialog")).to_be_hidden()  # no keys on this server
    finally:
        server.stop()
