"""Pre- and post-processing through the pipeline, with a fake runtime that echoes inputs."""

from __future__ import annotations

import base64
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from augury.predict.config import parse_config
from augury.predict.errors import InvalidInput
from augury.predict.pipeline import InferRequest, Pipeline
from augury.predict.preprocess import build_preprocessor
from tests.predict.helpers import png


class Echo:
    """Returns its single input as "scores"; records batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        (x,) = inputs.values()
        self.batches.append(x.shape[0])
        return {"scores": x.reshape(x.shape[0], -1)}


TABULAR = """
task = "regression"
runtime = "onnx"
[[inputs]]
name = "input"
dtype = "FP32"
shape = [-1, 2]
[[outputs]]
name = "prediction"
dtype = "FP32"
shape = [-1, 2]
[postprocess]
units = "USD"
[preprocess]
kind = "tabular"
[[preprocess.features]]
name = "amount"
min = 0.0
max = 100.0
mean = 10.0
std = 2.0
[[preprocess.features]]
name = "age"
required = false
default = 30.0
"""


def pipeline(toml: str, tmp_path: Path) -> tuple[Pipeline, Echo]:
    config = parse_config(tomllib.loads(toml), "m")
    echo = Echo()
    return Pipeline(config, echo, build_preprocessor(config, tmp_path)), echo


def matrix(rows: list[list[float]]) -> InferRequest:
    return InferRequest({"input": np.array(rows, np.float32)})


def test_tabular_standardizes_fills_defaults_and_splits_in_order(tmp_path: Path) -> None:
    p, echo = pipeline(TABULAR, tmp_path)
    per_feature = InferRequest({"amount": np.array([14.0], np.float32)})
    results = p.execute([matrix([[12.0, np.nan], [10.0, 40.0]]), per_feature])
    assert echo.batches == [3]
    first, second = results
    assert not isinstance(first, Exception) and not isinstance(second, Exception)
    np.testing.assert_allclose(first.outputs["prediction"], [[1.0, 30.0], [0.0, 40.0]])
    np.testing.assert_allclose(second.outputs["prediction"], [[2.0, 30.0]])
    assert first.parameters == {"prediction": {"units": "USD"}}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (matrix([[np.nan, 1.0]]), "feature 'amount' is required but missing"),
        (matrix([[500.0, 1.0]]), "feature 'amount' = 500.0 (row 0) is outside its range"),
        (matrix([[5.0, np.inf]]), "feature 'age' = inf"),
        (InferRequest({"age": np.array([1.0], np.float32)}), "'amount' is required"),
    ],
)
def test_tabular_rejects_by_feature_name_and_fails_alone(
    tmp_path: Path, request_: InferRequest, message: str
) -> None:
    p, echo = pipeline(TABULAR, tmp_path)
    good, bad = p.execute([matrix([[10.0, 1.0]]), request_])
    assert isinstance(bad, InvalidInput) and message in str(bad)
    assert not isinstance(good, Exception)
    assert echo.batches == [1]


IMAGE = """
task = "classification"
runtime = "onnx"
labels = ["dark", "light"]
[[inputs]]
name = "image"
dtype = "BYTES"
shape = [-1]
[[outputs]]
name = "label"
dtype = "BYTES"
shape = [-1]
[[outputs]]
name = "top_k_labels"
dtype = "BYTES"
shape = [-1, 1]
[postprocess]
top_k = 1
softmax = true
[preprocess]
kind = "image"
mode = "L"
size = [4, 4]
crop = 2
scale = 1.0
layout = "flat"
"""


def test_image_decode_resize_crop_and_layout(tmp_path: Path) -> None:
    from augury.predict.preprocess.image import ImagePreprocessor

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[2:6, 2:6] = 200
    table = {"kind": "image", "size": [8, 8], "crop": 4, "mean": [0.5] * 3, "std": [0.5] * 3}
    pre = ImagePreprocessor(table, "image")
    pixels = pre({"image": np.array([png(rgb), base64.b64encode(png(rgb)).decode()], object)})
    assert pixels["input"].dtype == np.uint8 and pixels["input"].shape == (2, 4, 4, 3)
    x = pre.finish(pixels)["input"]  # batch-wide: scale, normalize, layout
    assert x.shape == (2, 3, 4, 4)  # (n, C, H, W), centre crop of the bright square
    np.testing.assert_allclose(x, (200 / 255 - 0.5) / 0.5, rtol=1e-5)


def test_image_model_postprocess_and_bad_image(tmp_path: Path) -> None:
    p, _ = pipeline(IMAGE, tmp_path)
    light = np.zeros((4, 4), np.uint8)
    light[1:3, 1:3] = 255  # the centre crop sees only this: scores [0, 0, 255, 255]...
    results = p.execute(
        [
            InferRequest({"image": np.array([png(light)], object)}),
            InferRequest({"image": np.array([b"not an image"], object)}),
        ]
    )
    ok, bad = results
    assert isinstance(bad, InvalidInput) and "not a readable PNG or JPEG" in str(bad)
    assert not isinstance(ok, Exception)
    assert ok.outputs["top_k_labels"].shape == (1, 1)


def test_threshold_and_validation(tmp_path: Path) -> None:
    toml = """
task = "classification"
runtime = "onnx"
labels = ["legit", "fraud"]
[[inputs]]
name = "input"
dtype = "FP32"
shape = [-1, 2]
[[outputs]]
name = "label"
dtype = "BYTES"
shape = [-1]
[postprocess]
threshold = 0.2
"""
    p, _ = pipeline(toml, tmp_path)
    result = p.predict(matrix([[0.9, 0.1], [0.75, 0.25]]))
    assert result.outputs["label"].tolist() == ["legit", "fraud"]
    with pytest.raises(InvalidInput, match="unknown output 'nope'"):
        p.validate(InferRequest({"input": np.zeros((1, 2), np.float32)}, outputs=("nope",)))
    with pytest.raises(InvalidInput, match="input 'input' is missing"):
        p.validate(InferRequest({}))


def test_images_of_different_sizes_are_padded_after_normalizing(tmp_path: Path) -> None:
    """With `resize` alone, images keep their aspect ratio, so a batch mixes sizes: each is
    normalized on its own request and the pipeline pads the finished floats with 0."""
    from augury.predict.preprocess.image import ImagePreprocessor

    table = {"kind": "image", "resize": 2, "mode": "L", "scale": 1.0, "mean": [100.0]}
    pre = ImagePreprocessor(table, "image")
    wide, square = np.full((2, 4), 200, np.uint8), np.full((2, 2), 200, np.uint8)
    one = pre({"image": np.array([png(wide)], object)})["input"]
    assert one.dtype == np.float32 and one.shape == (1, 1, 2, 4)  # finished per request
    assert pre.finish({"input": one})["input"] is one  # and not normalized twice
    from augury.predict.pipeline import _concat

    merged = _concat([one, pre({"image": np.array([png(square)], object)})["input"]])
    np.testing.assert_allclose(merged[1, 0, :, :2], 100.0)  # 200 - mean
    np.testing.assert_allclose(merged[1, 0, :, 2:], 0.0)  # padding


def test_big_endian_input_is_accepted_offline(tmp_path: Path) -> None:
    p, _ = pipeline(TABULAR, tmp_path)
    x = np.array([[12.0, 31.0]], dtype=">f4")  # e.g. np.load of another machine's file
    assert p.validate(InferRequest({"input": x})) == 1
