"""Declared input preparation: protocol tensors of one request -> runtime tensors.

Each kind (tabular, image, text) is a class built from the [preprocess] table; the table
maps to the class through `_KINDS`, so adding a kind is one module and one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from numpy.typing import NDArray

from augury.predict.config import ModelConfig


class Preprocessor(Protocol):
    """Turns the validated tensors of one request into runtime inputs (batch first).

    A kind may also define `finish(tensors) -> tensors`: the pipeline then merges the
    requests' outputs of `__call__` into one batch and runs `finish` on it once, so per-request
    work is only what can fail per request (decoding) and the arithmetic is batch-wide."""

    def __call__(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]: ...


def build_preprocessor(config: ModelConfig, folder: Path) -> Preprocessor | None:
    """The preprocessor declared by `config` (ConfigError naming a bad field), or None."""
    table = config.preprocess
    if not table:
        return None
    from augury.predict.preprocess.image import ImagePreprocessor
    from augury.predict.preprocess.tabular import TabularPreprocessor
    from augury.predict.preprocess.text import TextPreprocessor

    kinds: dict[str, Any] = {
        "tabular": TabularPreprocessor,
        "image": ImagePreprocessor,
        "text": TextPreprocessor,
    }
    preprocessor: Preprocessor = kinds[table["kind"]].from_table(table, config, folder)
    return preprocessor
