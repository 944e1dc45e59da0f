"""Image input: encoded PNG/JPEG bytes -> a float tensor the model expects.

    [preprocess]
    kind = "image"
    input = "image"             # a BYTES input, one encoded image per element
    output = "input"            # the runtime's input name
    mode = "RGB"                # Pillow mode: RGB or L (grayscale)
    resize = 256                # shorter side to this size (bilinear) ...
    size = [8, 8]               # ... or exactly this [width, height]
    crop = 224                  # then a centre crop to crop x crop (optional)
    scale = 0.00392156862745    # multiply pixel values (0..255) by this
    mean = [0.485, 0.456, 0.406]  # then (x - mean) / std per channel (optional)
    std = [0.229, 0.224, 0.225]
    layout = "CHW"              # CHW, HWC or flat (one row of H*W*C values)
    invert = false              # 255 - pixel before scaling (dark ink on light paper)

Elements are raw bytes (KServe binary extension) or base64 strings (JSON).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from augury.predict.config import ModelConfig
from augury.predict.errors import ConfigError, InvalidInput

LAYOUTS = ("CHW", "HWC", "flat")
MAX_PIXELS = 40_000_000
"""Larger images are refused before decoding (a small file can decode to gigabytes)."""


class ImagePreprocessor:
    """Decodes, resizes, crops and normalizes the images of one request."""

    def __init__(self, table: dict[str, Any], input_name: str) -> None:
        self.input_name = input_name
        self.output_name = str(table.get("output", "input"))
        self.mode = str(table.get("mode", "RGB"))
        if self.mode not in ("RGB", "L"):
            raise ConfigError(f"field 'preprocess.mode' must be RGB or L, got {self.mode!r}")
        channels = 3 if self.mode == "RGB" else 1
        self.resize = _opt_int(table, "resize")
        size = table.get("size")
        if size is not None and not (
            isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) for s in size)
        ):
            raise ConfigError(f"field 'preprocess.size' must be [width, height], got {size!r}")
        self.size: tuple[int, int] | None = None if size is None else (size[0], size[1])
        self.crop = _opt_int(table, "crop")
        self.scale = float(table.get("scale", 1.0 / 255.0))
        self.mean = _per_channel(table, "mean", channels, 0.0)
        self.std = _per_channel(table, "std", channels, 1.0)
        if np.any(self.std <= 0):
            raise ConfigError("field 'preprocess.std' must be > 0 for every channel")
        self.layout = str(table.get("layout", "CHW"))
        if self.layout not in LAYOUTS:
            raise ConfigError(f"field 'preprocess.layout' must be one of {LAYOUTS}")
        self.invert = bool(table.get("invert", False))

    @classmethod
    def from_table(cls, table: dict[str, Any], config: ModelConfig, folder: Path) -> Any:
        return cls(table, str(table.get("input", config.inputs[0].name)))

    def accepts(self) -> set[str]:
        return {self.input_name}

    def __call__(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """The request's images decoded, resized and cropped: uint8 (n, H, W, C) when every
        image comes out the same size (`size` or `crop` set), for `finish` to do the arithmetic
        batch-wide; otherwise finished here, so images of different sizes are padded (by the
        pipeline) after normalizing, not before. Per request: a bad image fails alone."""
        if self.input_name not in inputs:
            raise InvalidInput(f"input {self.input_name!r} (encoded images) is missing")
        items = np.asarray(inputs[self.input_name], dtype=object).reshape(-1)
        pixels = np.stack([self._decode(item, i) for i, item in enumerate(items)])  # (n, H, W, C)
        if self.size is None and self.crop is None:
            return self.finish({self.output_name: pixels})
        return {self.output_name: pixels}

    def finish(self, tensors: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Scale, normalize and lay out the merged uint8 pixels of a whole batch at once (a
        few numpy calls per batch instead of per request); finished tensors pass through."""
        if tensors[self.output_name].dtype != np.uint8:
            return dict(tensors)
        x = tensors[self.output_name].astype(np.float32)
        if self.invert:
            x = 255.0 - x
        x = (x * self.scale - self.mean) / self.std  # broadcasts over the channel axis
        if self.layout == "CHW":
            x = x.transpose(0, 3, 1, 2)  # (n, C, H, W)
        elif self.layout == "flat":
            x = x.reshape(x.shape[0], -1)  # (n, H * W * C)
        return {self.output_name: np.ascontiguousarray(x, dtype=np.float32)}

    def _decode(self, item: Any, i: int) -> NDArray[np.uint8]:
        data = _as_bytes(item, i)
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise InvalidInput(f"image {i} is {img.width}x{img.height}: too large")
                # The pixels are copied out (np.array) before the file closes; a converted,
                # resized or cropped image is already a copy of its own.
                return self._pixels(img if img.mode == self.mode else img.convert(self.mode), i)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"image {i} is not a readable PNG or JPEG: {exc}") from None

    def _pixels(self, image: Image.Image, i: int) -> NDArray[np.uint8]:
        """Resize, centre-crop, then the (H, W, C) uint8 array."""
        if self.size is not None:
            if image.size != self.size:
                image = image.resize(self.size, Image.Resampling.BILINEAR)
        elif self.resize is not None:
            w, h = image.size
            k = self.resize / min(w, h)
            image = image.resize(
                (max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR
            )
        if self.crop is not None:
            w, h = image.size
            c = self.crop
            if w < c or h < c:
                raise InvalidInput(f"image {i} is {w}x{h}, smaller than the {c}x{c} crop")
            left, top = (w - c) // 2, (h - c) // 2
            image = image.crop((left, top, left + c, top + c))
        arr = np.array(image, dtype=np.uint8)
        return arr[:, :, None] if arr.ndim == 2 else arr  # (H, W, C)


def _as_bytes(item: Any, i: int) -> bytes:
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    if isinstance(item, str):
        try:
            return base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"image {i} must be base64 (in JSON) or raw bytes") from None
    raise InvalidInput(f"image {i} must be encoded image bytes, got {type(item).__name__}")


def _opt_int(table: dict[str, Any], key: str) -> int | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ConfigError(f"field 'preprocess.{key}' must be a positive integer, got {value!r}")
    return value


def _per_channel(table: dict[str, Any], key: str, channels: int, default: float) -> NDArray[Any]:
    value = table.get(key, [default] * channels)
    if isinstance(value, int | float):
        value = [value] * channels
    if not isinstance(value, list) or len(value) != channels:
        raise ConfigError(f"field 'preprocess.{key}' must hold {channels} numbers, got {value!r}")
    return np.asarray(value, np.float32)
