"""Model weights from a GGUF file or a Hugging Face checkpoint directory, checked.

`load_weights` picks the loader from what the path holds (a file starting with the GGUF magic,
or a directory with config.json), not from its name. `summarize_weights` describes a checkpoint
from its headers alone, for `augury info`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from augury.models.config import LlamaConfig, LoadedModel
from augury.models.loader.gguf import (
    ROPE_FREQS,
    GGUFError,
    gguf_model,
    load_gguf,
    read_gguf_header,
)
from augury.models.loader.hf import (
    CONFIG_FILE,
    PICKLE_SUFFIXES,
    HFCheckpointError,
    load_hf,
    read_hf_header,
)

__all__ = [
    "GGUFError",
    "HFCheckpointError",
    "WeightsSummary",
    "load_weights",
    "summarize_weights",
]

WeightsFormat = Literal["gguf", "safetensors"]


@dataclass(frozen=True)
class WeightsSummary:
    """What a checkpoint holds, read from its headers only (no tensor data is decoded)."""

    path: Path
    format: WeightsFormat
    config: LlamaConfig
    file_size: int
    """Bytes on disk: the GGUF file, or config.json and every weight file."""
    storage: dict[str, tuple[int, int]]
    """Storage type ('Q4_1', 'F32', 'BF16' ...) -> (tensors, parameters), most parameters first."""
    metadata: dict[str, object]
    """GGUF key/value metadata, or config.json."""

    @property
    def num_parameters(self) -> int:
        """Parameters of the model (a tied LM head counted once)."""
        return sum(params for _, params in self.storage.values())

    @property
    def quantization(self) -> str:
        """The storage type holding most parameters."""
        return next(iter(self.storage))


def weights_format(path: str | os.PathLike[str]) -> WeightsFormat:
    """Which loader reads `path`; raises naming what the path holds when none does."""
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return "safetensors"
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; pass one of its GGUF files ({', '.join(ggufs[:3])})" if ggufs else ""
        raise ValueError(f"{path} is a directory without {CONFIG_FILE}: not a checkpoint{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    with path.open("rb") as f:
        if f.read(4) == b"GGUF":
            return "gguf"
    if path.suffix in PICKLE_SUFFIXES:
        hint = "pickle checkpoints can run code when loaded and are not read; use safetensors"
    elif path.suffix == ".safetensors" or path.name == CONFIG_FILE:
        hint = f"pass the directory that holds {CONFIG_FILE} and the safetensors files"
    else:
        hint = "expected a .gguf file or a Hugging Face directory (config.json + *.safetensors)"
    raise ValueError(f"{path} is not a model Augury can load: {hint}")


def load_weights(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load and check a GGUF file or a Hugging Face checkpoint directory."""
    if weights_format(path) == "gguf":
        return load_gguf(path, dtype)
    return load_hf(path, dtype)


def summarize_weights(path: str | os.PathLike[str]) -> WeightsSummary:
    """Describe a checkpoint from its headers; the same checks as loading, minus the data."""
    fmt = weights_format(path)
    counts: Counter[str] = Counter()
    params: Counter[str] = Counter()
    if fmt == "gguf":
        header = read_gguf_header(path)
        config, matched = gguf_model(header)
        for name, t in matched.items():
            if name != ROPE_FREQS:
                counts[t.qtype.name] += 1
                params[t.qtype.name] += t.n_elements
        size, metadata = header.file_size, header.metadata
    else:
        hf = read_hf_header(path)
        config = hf.config
        for info in hf.tensors.values():
            counts[info.dtype] += 1
            params[info.dtype] += info.n_elements
        size, metadata = hf.file_size, hf.metadata
    storage = {kind: (counts[kind], n) for kind, n in params.most_common()}
    return WeightsSummary(Path(path), fmt, config, size, storage, dict(metadata))
