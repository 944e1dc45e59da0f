"""Augury's own torch models: a BERT-style sentence encoder (e.g. all-MiniLM-L6-v2).

Loaded from a Hugging Face folder layout (config.json + model.safetensors, no pickle): token,
position and type embeddings, post-norm transformer layers, then mean pooling over the
attention mask and (optionally) L2 normalization, as sentence-transformers does.

runtime_options: normalize (default true), head (optional safetensors file with `weight`
(H, k) and `bias` (k,): a linear classifier on the embeddings, e.g. a topic model; its output
is "scores").
Inputs: input_ids, attention_mask, token_type_ids (n, T) int64. Output: "embedding" (n, H).
It runs torch on one thread per batch instance (more instances run batches in parallel), set
in each thread that loads or runs it (augury/threads.py says why), so `threads` is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from safetensors.torch import load_file
from torch import Tensor, nn

from augury.predict.config import ModelConfig
from augury.predict.errors import ConfigError
from augury.threads import set_torch_threads


@dataclass(frozen=True)
class EncoderConfig:
    """The fields of a BERT config.json that the math needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: Path) -> EncoderConfig:
        raw = json.loads(path.read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ConfigError(f"{path}: only gelu encoders are supported")
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in names})


class EncoderLayer(nn.Module):
    """Self-attention and MLP, each followed by a residual add and LayerNorm (post-norm)."""

    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size)  # query, key, value fused
        self.out = nn.Linear(c.hidden_size, c.hidden_size)
        self.norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.up = nn.Linear(c.hidden_size, c.intermediate_size)
        self.down = nn.Linear(c.intermediate_size, c.hidden_size)
        self.norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, T, H = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, H // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, T, head_dim)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, T, head_dim)
        x = self.norm1(x + self.out(a.transpose(1, 2).reshape(B, T, H)))
        return self.norm2(x + self.down(F.gelu(self.up(x))))


class TextEncoder(nn.Module):
    """Sentence embeddings: BERT layers, then the mask-weighted mean of the last layer."""

    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.num_hidden_layers))

    def forward(self, ids: Tensor, mask: Tensor, types: Tensor) -> Tensor:
        T = ids.shape[1]
        x = self.word(ids) + self.position.weight[:T] + self.token_type(types)  # (B, T, H)
        x = self.norm(x)
        keep = mask.bool()[:, None, None, :]  # (B, 1, 1, T): padding never attended to
        for layer in self.layers:
            x = layer(x, keep)
        m = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        return (x * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, H)


# Checkpoint names -> ours: data, not code. {i} is the layer index.
_LAYER_NAMES = {
    "attention.output.dense": "out",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "up",
    "output.dense": "down",
    "output.LayerNorm": "norm2",
}
_TOP_NAMES = {
    "embeddings.word_embeddings": "word",
    "embeddings.position_embeddings": "position",
    "embeddings.token_type_embeddings": "token_type",
    "embeddings.LayerNorm": "norm",
}


def load_encoder(folder: Path) -> TextEncoder:
    """A TextEncoder from config.json + model.safetensors in `folder`."""
    config = EncoderConfig.from_json(folder / "config.json")
    raw = load_file(str(folder / "model.safetensors"))
    raw = {k.removeprefix("bert."): v for k, v in raw.items()}
    state: dict[str, Tensor] = {}
    for old, new in _TOP_NAMES.items():
        for part in ("weight", "bias"):
            if f"{old}.{part}" in raw:
                state[f"{new}.{part}"] = raw[f"{old}.{part}"]
    for i in range(config.num_hidden_layers):
        pre = f"encoder.layer.{i}."
        for old, new in _LAYER_NAMES.items():
            for part in ("weight", "bias"):
                state[f"layers.{i}.{new}.{part}"] = raw[f"{pre}{old}.{part}"]
        for part in ("weight", "bias"):
            state[f"layers.{i}.qkv.{part}"] = torch.cat(
                [raw[f"{pre}attention.self.{n}.{part}"] for n in ("query", "key", "value")]
            )
    model = TextEncoder(config)
    model.load_state_dict(state, strict=True)
    return model.eval()


class TorchEncoderRuntime:
    """Runs a TextEncoder on token ids under inference mode."""

    def __init__(self, model: TextEncoder, normalize: bool, head: dict[str, Tensor] | None) -> None:
        self.model = model
        self.normalize = normalize
        self.head = head

    def run(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        ids = torch.from_numpy(np.ascontiguousarray(inputs["input_ids"], np.int64))
        mask = torch.from_numpy(np.ascontiguousarray(inputs["attention_mask"], np.int64))
        types = inputs.get("token_type_ids")
        type_ids = torch.zeros_like(ids) if types is None else torch.from_numpy(types)
        set_torch_threads(1)
        with torch.inference_mode():
            emb = self.model(ids, mask, type_ids)
            if self.normalize:
                emb = F.normalize(emb, dim=-1)
            if self.head is not None:
                scores = emb @ self.head["weight"] + self.head["bias"]  # (n, k)
                return {"scores": scores.numpy(), "embedding": emb.numpy()}
        return {"embedding": emb.numpy()}


def load(config: ModelConfig, folder: Path) -> TorchEncoderRuntime:
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ConfigError(f"{folder}: runtime 'torch' needs config.json and model.safetensors")
    opts = config.runtime_options
    if "threads" in opts:
        raise ConfigError(
            f"{folder}: runtime 'torch' takes no threads option (it runs one torch thread per "
            "batch instance; raise [batching] instances for more batches at once)"
        )
    set_torch_threads(1)
    head = None
    if "head" in opts:
        head = load_file(str(folder / str(opts["head"])))
        if set(head) != {"weight", "bias"}:
            raise ConfigError(f"{folder / opts['head']} must hold exactly 'weight' and 'bias'")
        head = {k: v.float() for k, v in head.items()}
    return TorchEncoderRuntime(load_encoder(folder), bool(opts.get("normalize", True)), head)
