"""Text input: strings -> token ids with padding and truncation (a `tokenizers` tokenizer).

    [preprocess]
    kind = "text"
    input = "text"               # a BYTES input, one string per element
    tokenizer = "tokenizer.json" # in the version folder
    max_length = 128             # longer texts are truncated
    token_type_ids = true        # also produce token_type_ids (BERT-style models)

Produces int64 `input_ids` and `attention_mask` (n, T), padded to the longest text of the
request; the pipeline pads again to the longest request of a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

from augury.predict.config import ModelConfig
from augury.predict.errors import ConfigError, InvalidInput


class TextPreprocessor:
    """Tokenizes the texts of one request."""

    def __init__(self, tokenizer: Tokenizer, input_name: str, max_length: int, types: bool) -> None:
        self.tokenizer = tokenizer
        self.input_name = input_name
        self.max_length = max_length
        self.types = types
        tokenizer.enable_truncation(max_length)
        tokenizer.enable_padding(pad_id=0)

    @classmethod
    def from_table(cls, table: dict[str, Any], config: ModelConfig, folder: Path) -> Any:
        path = folder / str(table.get("tokenizer", "tokenizer.json"))
        if not path.is_file():
            raise ConfigError(f"field 'preprocess.tokenizer': {path} is missing")
        max_length = table.get("max_length", 128)
        if not isinstance(max_length, int) or max_length < 2:
            raise ConfigError(f"field 'preprocess.max_length' must be >= 2, got {max_length!r}")
        input_name = str(table.get("input", config.inputs[0].name))
        types = bool(table.get("token_type_ids", True))
        return cls(Tokenizer.from_file(str(path)), input_name, max_length, types)

    def accepts(self) -> set[str]:
        return {self.input_name}

    def __call__(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        if self.input_name not in inputs:
            raise InvalidInput(f"input {self.input_name!r} (texts) is missing")
        texts = [_text(x, i) for i, x in enumerate(np.asarray(inputs[self.input_name]).ravel())]
        return self.encode(texts)

    def encode(self, texts: list[str]) -> dict[str, NDArray[Any]]:
        encodings = self.tokenizer.encode_batch(texts)
        out = {
            "input_ids": np.array([e.ids for e in encodings], np.int64),  # (n, T)
            "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
        }
        if self.types:
            out["token_type_ids"] = np.zeros_like(out["input_ids"])
        return out


def _text(item: Any, i: int) -> str:
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"text {i} is not valid UTF-8") from None
    if isinstance(item, str):
        return item
    raise InvalidInput(f"text {i} must be a string, got {type(item).__name__}")
