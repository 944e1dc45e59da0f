"""GGUF model files: metadata, tensors and dequantization, checked before use.

Reading is done by the `gguf` package (a memory map, nothing executed). On top of it this module
checks everything a corrupt or foreign file could get wrong — the architecture, every required
key, every tensor's presence, type, shape and byte range — and raises :class:`GGUFError` naming
the key or tensor, so that a bad file never surfaces as an IndexError or a read past the end.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from augury.models.config import LlamaConfig, LoadedModel

log = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("llama",)

# Storage types we dequantize (through gguf.quants, vectorized numpy).
SUPPORTED_TYPES = frozenset(
    {
        GGMLQuantizationType.F32,
        GGMLQuantizationType.F16,
        GGMLQuantizationType.BF16,
        GGMLQuantizationType.Q8_0,
        GGMLQuantizationType.Q4_0,
        GGMLQuantizationType.Q4_1,
        GGMLQuantizationType.Q5_0,
        GGMLQuantizationType.Q5_1,
        GGMLQuantizationType.Q2_K,
        GGMLQuantizationType.Q3_K,
        GGMLQuantizationType.Q4_K,
        GGMLQuantizationType.Q5_K,
        GGMLQuantizationType.Q6_K,
    }
)

# GGUF tensor names -> Hugging Face names; "{n}" is the layer index. Data, not an if-chain.
GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
# Tensors a Llama GGUF may carry that the model recomputes itself.
IGNORED_NAMES = ("rope_freqs.weight",)


class GGUFError(ValueError):
    """A GGUF file that cannot be used, with the key or tensor that is wrong."""


def _open(path: str | os.PathLike[str]) -> GGUFReader:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        return GGUFReader(path)
    except Exception as exc:  # the reader raises many types on corrupt input
        raise GGUFError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from exc


def _field_value(reader: GGUFReader, key: str) -> Any:
    field = reader.fields[key]
    try:
        value = field.contents()
    except Exception as exc:
        raise GGUFError(f"metadata key '{key}' is corrupt ({type(exc).__name__}: {exc})") from exc
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, object]:
    """All key/value metadata of a GGUF file as plain Python values (no tensor data is read)."""
    reader = _open(path)
    return {key: _field_value(reader, key) for key in reader.fields if not key.startswith("GGUF.")}


def _require(meta: Mapping[str, object], key: str, kind: type) -> Any:
    if key not in meta:
        raise GGUFError(f"metadata key '{key}' is missing")
    value = meta[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise GGUFError(f"metadata key '{key}' should be {kind.__name__}, got {value!r}")
    return value


def config_from_metadata(meta: Mapping[str, object], has_output: bool) -> LlamaConfig:
    """The architecture described by GGUF metadata; `has_output` says whether an LM head is stored."""
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(
            f"metadata key 'general.architecture' is {arch!r}; supported: {SUPPORTED_ARCHITECTURES}"
        )
    a = str(arch)
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = meta.get(f"{a}.vocab_size")
    if vocab is None and isinstance(tokens, list):
        vocab = len(tokens)
    if not isinstance(vocab, int) or vocab <= 0:
        raise GGUFError(f"metadata key '{a}.vocab_size' is missing or invalid: {vocab!r}")
    num_heads = _require(meta, f"{a}.attention.head_count", int)
    hidden = _require(meta, f"{a}.embedding_length", int)
    head_dim = meta.get(f"{a}.rope.dimension_count", hidden // max(num_heads, 1))
    eos = meta.get("tokenizer.ggml.eos_token_id")
    bos = meta.get("tokenizer.ggml.bos_token_id")
    try:
        return LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=_require(meta, f"{a}.feed_forward_length", int),
            num_layers=_require(meta, f"{a}.block_count", int),
            num_heads=num_heads,
            num_kv_heads=int(meta.get(f"{a}.attention.head_count_kv", num_heads)),  # type: ignore[call-overload]
            max_position_embeddings=_require(meta, f"{a}.context_length", int),
            rms_norm_eps=_require(meta, f"{a}.attention.layer_norm_rms_epsilon", float),
            rope_theta=float(meta.get(f"{a}.rope.freq_base", 10000.0)),  # type: ignore[arg-type]
            tie_word_embeddings=not has_output,
            head_dim=int(head_dim),  # type: ignore[call-overload]
            bos_token_id=bos if isinstance(bos, int) else None,
            eos_token_ids=(eos,) if isinstance(eos, int) else (),
            architecture=a,
        )
    except (TypeError, ValueError) as exc:
        raise GGUFError(f"metadata describes an invalid {a} model: {exc}") from exc


def _hf_name(gguf_name: str, num_layers: int) -> str | None:
    if gguf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[gguf_name]
    if gguf_name in IGNORED_NAMES:
        return None
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in LAYER_NAMES:
        n = int(parts[1])
        if n >= num_layers:
            raise GGUFError(f"tensor '{gguf_name}' names layer {n} of a {num_layers}-layer model")
        return f"model.layers.{n}.{LAYER_NAMES[parts[2]]}"
    raise GGUFError(f"tensor '{gguf_name}' is not part of a llama model")


def unpermute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo the row permutation that llama.cpp's converter applies to Q and K weights.

    The converter interleaves the two halves of each head (rotary pairs (i, i + d/2) become
    (2i, 2i + 1)); Hugging Face's rotate_half expects the halves, so swap back.
    """
    out_features = w.shape[0]
    half = out_features // n_heads // 2
    # (n_heads, half, 2, in) -> (n_heads, 2, half, in)
    return w.reshape(n_heads, half, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _dequantize(name: str, qtype: GGMLQuantizationType, raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if qtype not in SUPPORTED_TYPES:
        raise GGUFError(
            f"tensor '{name}' has type {qtype.name}, which Augury cannot dequantize; supported: "
            + ", ".join(sorted(t.name for t in SUPPORTED_TYPES))
        )
    try:
        if qtype == GGMLQuantizationType.F32:
            values = np.array(raw, dtype=np.float32)
        elif qtype == GGMLQuantizationType.F16:
            values = np.array(raw, dtype=np.float16).astype(np.float32)
        else:
            values = dequantize(raw, qtype)
        return values.reshape(shape)
    except GGUFError:
        raise
    except Exception as exc:
        raise GGUFError(f"tensor '{name}' could not be decoded ({type(exc).__name__}: {exc})") from exc


def load_gguf(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Read, check and dequantize a Llama-family GGUF into Hugging Face-named float tensors."""
    reader = _open(path)
    meta = {key: _field_value(reader, key) for key in reader.fields if not key.startswith("GGUF.")}
    names = [t.name for t in reader.tensors]
    config = config_from_metadata(meta, has_output="output.weight" in names)
    expected = config.expected_shapes()
    file_size = Path(path).stat().st_size

    tensors: dict[str, torch.Tensor] = {}
    types: Counter[str] = Counter()
    for t in reader.tensors:
        hf = _hf_name(t.name, config.num_layers)
        if hf is None:
            continue
        if hf in tensors:
            raise GGUFError(f"tensor '{t.name}' appears twice")
        # GGUF lists dimensions innermost first; torch wants (out, in).
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        if shape != expected[hf]:
            raise GGUFError(f"tensor '{t.name}' has shape {shape}, expected {expected[hf]}")
        try:
            block, type_size = GGML_QUANT_SIZES[t.tensor_type]
        except KeyError as exc:
            raise GGUFError(f"tensor '{t.name}' has unknown type {t.tensor_type}") from exc
        if shape[-1] % block:
            raise GGUFError(f"tensor '{t.name}': row length {shape[-1]} is not a multiple of {block}")
        n_bytes = int(np.prod(shape)) // block * type_size
        if t.data_offset + n_bytes > file_size or t.data.nbytes != n_bytes:
            raise GGUFError(f"tensor '{t.name}' runs past the end of the file (truncated?)")
        values = torch.from_numpy(_dequantize(t.name, t.tensor_type, t.data, shape))
        if hf.endswith("q_proj.weight"):
            values = unpermute_rotary(values, config.num_heads)
        elif hf.endswith("k_proj.weight"):
            values = unpermute_rotary(values, config.num_kv_heads)
        tensors[hf] = values.to(dtype)
        types[t.tensor_type.name] += t.n_elements

    missing = [name for name in expected if name not in tensors]
    if missing:
        raise GGUFError(f"tensor for '{missing[0]}' is missing ({len(missing)} missing in all)")
    quant = types.most_common(1)[0][0]
    log.debug("loaded %s: %d tensors, storage %s", path, len(tensors), dict(types))
    return LoadedModel(config=config, tensors=tensors, quantization=quant, metadata=meta)
