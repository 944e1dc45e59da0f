"""GGUF model files: a bounded header parser, checked tensors and fast dequantization.

The header (metadata and tensor directory) is parsed here rather than by ``gguf.GGUFReader``:
that reader trusts the counts in the file (a corrupt array length makes it loop for ever) and
builds one numpy view per array element (seconds for a 49k-token vocabulary). Here every count
and length is checked against the bytes that remain before it is used, so a corrupt file costs
at most memory proportional to its own size and raises :class:`GGUFError` naming the key or
tensor. Tensor data is read with plain file reads into fresh buffers and decoded with torch for
the float types, Q4_0, Q4_1 and Q8_0 (bit-exact with ``gguf.quants``), with ``gguf.quants`` for
the other supported types.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import struct
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from gguf.quants import dequantize

from augury.models.config import LlamaConfig, LoadedModel

SUPPORTED_ARCHITECTURES = ("llama",)
SUPPORTED_VERSIONS = (2, 3)
MAX_DIMS = 4
"""GGML_MAX_DIMS: tensors have 1 to 4 dimensions."""
MAX_ARRAY_LEN = 1 << 24
"""Longest metadata array accepted: far above any vocabulary, and it bounds the lists built."""
MAX_CONTEXT = 1 << 24
"""Largest context_length accepted (the rotary tables are built for all of it)."""
DEFAULT_ALIGNMENT = 32

Q = GGMLQuantizationType
# Storage types we dequantize: torch for the first six, gguf.quants (numpy) for the K-quants.
SUPPORTED_TYPES = frozenset(
    {Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1}
    | {Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K}
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
ROPE_FREQS = "rope_freqs.weight"
"""Per-frequency rotary factors (Llama 3.1 scaling); accepted only when they are all 1."""

# Scalar value types (codes 0-7 and 10-12) -> struct/numpy format; little-endian is added at use.
_SCALARS = {
    GGUFValueType(code): fmt
    for code, fmt in zip((0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12), "BbHhIif?Qqd", strict=True)
}
_U64 = struct.Struct("<Q")


class GGUFError(ValueError):
    """A GGUF file that cannot be used, with the key or tensor that is wrong."""


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One entry of the tensor directory, its byte range already checked against the file."""

    name: str
    shape: tuple[int, ...]
    """torch order, outermost first (the file lists dimensions innermost first)."""
    qtype: GGMLQuantizationType
    offset: int
    """Absolute byte offset of the data in the file."""
    n_bytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class GGUFHeader:
    """Everything before the tensor data: version, metadata and the tensor directory."""

    version: int
    metadata: dict[str, object]
    tensors: tuple[GGUFTensorInfo, ...]
    file_size: int


class _Cursor:
    """Little-endian reads from a buffer; every read is checked against the end first."""

    def __init__(self, buf: mmap.mmap, pos: int) -> None:
        self.buf = buf
        self.end = len(buf)
        self.pos = pos

    def take(self, n: int, what: str) -> int:
        """Claim the next n bytes and return their offset."""
        if n > self.end - self.pos:
            raise GGUFError(f"{what} runs past the end of the file at byte {self.pos} (truncated?)")
        start = self.pos
        self.pos += n
        return start

    def scalar(self, fmt: str, what: str) -> Any:
        fmt = "<" + fmt
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.scalar("Q", what)
        start = self.take(n, what)
        return _decode(self.buf[start : start + n], what)

    def strings(self, count: int, what: str) -> list[str]:
        """`count` strings; the hot loop of a vocabulary, so it keeps its state in locals."""
        buf, pos, end = self.buf, self.pos, self.end
        raw: list[bytes] = []
        for _ in range(count):
            if pos + 8 > end:
                raise GGUFError(f"{what} runs past the end of the file at byte {pos} (truncated?)")
            (n,) = _U64.unpack_from(buf, pos)
            pos += 8
            if n > end - pos:
                raise GGUFError(f"{what} runs past the end of the file at byte {pos} (truncated?)")
            raw.append(buf[pos : pos + n])
            pos += n
        self.pos = pos
        try:
            return [b.decode("utf-8") for b in raw]
        except UnicodeDecodeError as exc:
            raise GGUFError(f"{what} holds a string that is not valid UTF-8") from exc


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GGUFError(f"{what} holds a string that is not valid UTF-8") from exc


def _value_type(raw: int, what: str) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise GGUFError(f"{what} has unknown value type {raw}") from None


def _read_value(cur: _Cursor, vtype: GGUFValueType, what: str) -> object:
    if vtype == GGUFValueType.STRING:
        return cur.string(what)
    if vtype in _SCALARS:
        value = cur.scalar(_SCALARS[vtype], what)
        return bool(value) if vtype == GGUFValueType.BOOL else value
    item = _value_type(cur.scalar("I", what), what)
    count = cur.scalar("Q", what)
    if count > MAX_ARRAY_LEN:
        raise GGUFError(f"{what} claims {count} array items (at most {MAX_ARRAY_LEN} accepted)")
    if item == GGUFValueType.STRING:
        if count * 8 > cur.end - cur.pos:
            raise GGUFError(f"{what} claims {count} strings, more than the file holds (corrupt?)")
        return cur.strings(count, what)
    if item not in _SCALARS:
        raise GGUFError(f"{what} is an array of arrays, which llama.cpp does not support either")
    dtype = np.dtype("<" + _SCALARS[item])
    start = cur.take(count * dtype.itemsize, what)
    values = np.frombuffer(cur.buf[start : cur.pos], dtype=dtype)
    return (values != 0).tolist() if item == GGUFValueType.BOOL else values.tolist()


def _check_magic(buf: mmap.mmap, path: Path) -> int:
    if buf[:4] != b"GGUF":
        raise GGUFError(f"{path} is not a GGUF file: it starts with {buf[:4]!r}, not b'GGUF'")
    (version,) = struct.unpack_from("<I", buf, 4)
    if version in SUPPORTED_VERSIONS:
        return int(version)
    if version & 0xFFFF == 0:
        raise GGUFError(f"{path} is a big-endian GGUF; convert it with gguf-convert-endian")
    raise GGUFError(f"{path} is GGUF version {version}; supported versions: {SUPPORTED_VERSIONS}")


def _read_metadata(cur: _Cursor, count: int) -> tuple[dict[str, object], int]:
    """The key/value section, and the data alignment it sets."""
    meta: dict[str, object] = {}
    alignment = DEFAULT_ALIGNMENT
    for i in range(count):
        key = cur.string(f"metadata entry {i}")
        what = f"metadata key '{key}'"
        if key in meta:
            raise GGUFError(f"{what} appears twice")
        vtype = _value_type(cur.scalar("I", what), what)
        meta[key] = value = _read_value(cur, vtype, what)
        if key == "general.alignment":
            if vtype != GGUFValueType.UINT32 or not isinstance(value, int):
                raise GGUFError(f"{what} should be a uint32, got {vtype.name}")
            if value <= 0 or value & (value - 1):
                raise GGUFError(f"{what} is {value}; it must be a power of two")
            alignment = value
    return meta, alignment


def _read_tensor_info(cur: _Cursor, index: int) -> tuple[str, list[int], int, int]:
    name = cur.string(f"tensor info {index}")
    what = f"tensor '{name}'"
    n_dims = cur.scalar("I", what)
    if not 1 <= n_dims <= MAX_DIMS:
        raise GGUFError(f"{what} has {n_dims} dimensions; GGUF allows 1 to {MAX_DIMS}")
    dims = [int(cur.scalar("Q", what)) for _ in range(n_dims)]
    return name, dims, cur.scalar("I", what), cur.scalar("Q", what)


def _tensor_info(
    name: str, dims: list[int], raw_type: int, rel_offset: int, data_start: int, alignment: int
) -> GGUFTensorInfo:
    what = f"tensor '{name}'"
    try:
        qtype = GGMLQuantizationType(raw_type)
        block, type_size = GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        raise GGUFError(f"{what} has unknown storage type {raw_type}") from None
    if dims[0] % block:
        raise GGUFError(f"{what}: row length {dims[0]} is not a multiple of {qtype.name}'s {block}")
    if rel_offset % alignment:
        raise GGUFError(f"{what}: data offset {rel_offset} is not a multiple of {alignment}")
    shape = tuple(reversed(dims))
    return GGUFTensorInfo(
        name, shape, qtype, data_start + rel_offset, math.prod(shape) // block * type_size
    )


def _parse_header(buf: mmap.mmap, path: Path) -> GGUFHeader:
    version = _check_magic(buf, path)
    cur = _Cursor(buf, 8)
    n_tensors = cur.scalar("Q", "tensor count")
    n_kv = cur.scalar("Q", "metadata count")
    left = cur.end - cur.pos
    # A key/value entry takes at least 13 bytes, a tensor entry at least 32.
    if n_kv * 13 + n_tensors * 32 > left:
        raise GGUFError(
            f"{path}: the header claims {n_kv} metadata keys and {n_tensors} tensors, more than "
            f"the {left} bytes that follow can hold (corrupt or truncated file)"
        )
    meta, alignment = _read_metadata(cur, n_kv)
    raw = [_read_tensor_info(cur, i) for i in range(n_tensors)]
    data_start = -(-cur.pos // alignment) * alignment
    tensors: dict[str, GGUFTensorInfo] = {}
    for name, dims, raw_type, rel in raw:
        if name in tensors:
            raise GGUFError(f"tensor '{name}' appears twice")
        info = _tensor_info(name, dims, raw_type, rel, data_start, alignment)
        if info.offset + info.n_bytes > len(buf):
            raise GGUFError(f"tensor '{name}' runs past the end of the file (truncated?)")
        tensors[name] = info
    # Disjoint data ranges (as llama.cpp requires) bound the total decoded size by the file's.
    end = data_start
    for t in sorted(tensors.values(), key=lambda t: t.offset):
        if t.offset < end:
            raise GGUFError(f"tensor '{t.name}' overlaps the data of the tensor before it")
        end = t.offset + t.n_bytes
    return GGUFHeader(version, meta, tuple(tensors.values()), len(buf))


def read_gguf_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Parse and check a GGUF's metadata and tensor directory (no tensor data is read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.stat().st_size < 24:
        raise GGUFError(f"{path} is too short for a GGUF header (empty or truncated)")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _parse_header(buf, path)


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, object]:
    """All key/value metadata of a GGUF file as plain Python values (no tensor data is read)."""
    return read_gguf_header(path).metadata


def _int(meta: Mapping[str, object], key: str, default: int | None = None) -> int:
    """A positive integer setting; missing is an error unless there is a default."""
    value = meta.get(key, default)
    if value is None:
        raise GGUFError(f"metadata key '{key}' is missing")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise GGUFError(f"metadata key '{key}' should be a positive integer, got {value!r:.80}")
    return value


def _float(meta: Mapping[str, object], key: str, default: float | None = None) -> float:
    """A positive finite number (NaN or infinity in eps or rope theta would poison every logit)."""
    value = meta.get(key, default)
    if value is None:
        raise GGUFError(f"metadata key '{key}' is missing")
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < math.inf:
        raise GGUFError(
            f"metadata key '{key}' should be a positive finite number, got {value!r:.80}"
        )
    return float(value)


def _token_id(meta: Mapping[str, object], key: str, vocab: int) -> int | None:
    value = meta.get(key)
    if value is not None and (type(value) is not int or not 0 <= value < vocab):
        raise GGUFError(f"metadata key '{key}' is {value!r:.80}, not a token id below {vocab}")
    return value


def _refuse_unsupported(meta: Mapping[str, object], a: str, head_dim: int) -> None:
    """Variants of the llama architecture that the model does not implement."""
    if meta.get(f"{a}.expert_count", 0) not in (0, None):
        raise GGUFError(f"metadata key '{a}.expert_count' is set: mixture-of-experts unsupported")
    scaling = meta.get(f"{a}.rope.scaling.type", "none")
    if scaling != "none" and meta.get(f"{a}.rope.scaling.factor") != 1.0:
        raise GGUFError(f"metadata key '{a}.rope.scaling.type' is {scaling!r}: unsupported")
    for key in (f"{a}.rope.dimension_count", f"{a}.attention.value_length"):
        value = _int(meta, key, head_dim)
        if value != head_dim:
            raise GGUFError(f"metadata key '{key}' is {value}; only {head_dim} is supported")


def config_from_metadata(meta: Mapping[str, object], has_output: bool) -> LlamaConfig:
    """The architecture GGUF metadata describes; `has_output`: the file stores an LM head."""
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(
            f"metadata key 'general.architecture' is {arch!r:.80}; "
            f"supported: {SUPPORTED_ARCHITECTURES}"
        )
    a = str(arch)
    tokens = meta.get("tokenizer.ggml.tokens")
    n_tokens = len(tokens) if isinstance(tokens, list) else 0
    vocab = meta.get(f"{a}.vocab_size", n_tokens)
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab <= 0 or vocab < n_tokens:
        raise GGUFError(
            f"metadata key '{a}.vocab_size' is missing or below the {n_tokens} entries "
            "of 'tokenizer.ggml.tokens'"
        )
    num_heads = _int(meta, f"{a}.attention.head_count")
    hidden = _int(meta, f"{a}.embedding_length")
    head_dim = _int(meta, f"{a}.attention.key_length", max(hidden // num_heads, 1))
    _refuse_unsupported(meta, a, head_dim)
    context = _int(meta, f"{a}.context_length")
    if context > MAX_CONTEXT:
        raise GGUFError(f"metadata key '{a}.context_length' is {context}; at most {MAX_CONTEXT}")
    bos = _token_id(meta, "tokenizer.ggml.bos_token_id", vocab)
    eos = _token_id(meta, "tokenizer.ggml.eos_token_id", vocab)
    try:
        return LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=_int(meta, f"{a}.feed_forward_length"),
            num_layers=_int(meta, f"{a}.block_count"),
            num_heads=num_heads,
            num_kv_heads=_int(meta, f"{a}.attention.head_count_kv", num_heads),
            max_position_embeddings=context,
            rms_norm_eps=_float(meta, f"{a}.attention.layer_norm_rms_epsilon"),
            rope_theta=_float(meta, f"{a}.rope.freq_base", 10000.0),
            tie_word_embeddings=not has_output,
            head_dim=head_dim,
            bos_token_id=bos,
            eos_token_ids=() if eos is None else (eos,),
            architecture=a,
        )
    except ValueError as exc:
        raise GGUFError(
            f"metadata keys '{a}.attention.head_count' and '{a}.attention.head_count_kv' "
            f"describe an invalid model: {exc}"
        ) from exc


def _hf_name(gguf_name: str, num_layers: int) -> str:
    if gguf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isascii() and parts[1].isdigit():
        n = int(parts[1])
        if parts[2] in LAYER_NAMES and n < num_layers:
            return f"model.layers.{n}.{LAYER_NAMES[parts[2]]}"
    raise GGUFError(f"tensor '{gguf_name}' is not part of a {num_layers}-layer llama model")


def _gguf_name(hf_name: str) -> str:
    for gguf_name, hf in GLOBAL_NAMES.items():
        if hf == hf_name:
            return gguf_name
    _, _, n, rest = hf_name.split(".", 3)
    return f"blk.{n}." + next(g for g, h in LAYER_NAMES.items() if h == rest)


def match_tensors(header: GGUFHeader, config: LlamaConfig) -> dict[str, GGUFTensorInfo]:
    """The file's entry for every tensor the model needs (Hugging Face names), checked.

    Every tensor must be known, of a supported type and of the expected shape; none may be
    missing. A `rope_freqs.weight` entry is kept under its own name for `load_gguf` to check.
    """
    if config.num_layers > len(header.tensors):
        raise GGUFError(
            f"metadata key '{config.architecture}.block_count' is {config.num_layers}, "
            f"but the file holds only {len(header.tensors)} tensors"
        )
    expected = config.expected_shapes()
    expected[ROPE_FREQS] = (config.head_dim // 2,)
    matched: dict[str, GGUFTensorInfo] = {}
    for t in header.tensors:
        hf = ROPE_FREQS if t.name == ROPE_FREQS else _hf_name(t.name, config.num_layers)
        if t.shape != expected[hf]:
            raise GGUFError(f"tensor '{t.name}' has shape {t.shape}, expected {expected[hf]}")
        if t.qtype not in SUPPORTED_TYPES:
            raise GGUFError(
                f"tensor '{t.name}' has type {t.qtype.name}, which Augury cannot dequantize; "
                "supported: " + ", ".join(sorted(q.name for q in SUPPORTED_TYPES))
            )
        matched[hf] = t
    missing = [name for name in expected if name not in matched and name != ROPE_FREQS]
    if missing:
        raise GGUFError(
            f"tensor '{_gguf_name(missing[0])}' ({missing[0]}) is missing "
            f"({len(missing)} missing in all)"
        )
    return matched


def gguf_model(header: GGUFHeader) -> tuple[LlamaConfig, dict[str, GGUFTensorInfo]]:
    """The model a GGUF header describes: its config and the checked entry of every tensor."""
    has_output = any(t.name == "output.weight" for t in header.tensors)
    config = config_from_metadata(header.metadata, has_output)
    return config, match_tensors(header, config)


def unpermute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo the row permutation that llama.cpp's converter applies to Q and K weights.

    The converter interleaves the two halves of each head (rotary pairs (i, i + d/2) become
    (2i, 2i + 1)); Hugging Face's rotate_half expects the halves, so swap back.
    """
    half = w.shape[0] // n_heads // 2
    # (n_heads, half, 2, in) -> (n_heads, 2, half, in)
    return w.reshape(n_heads, half, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n, 16) packed bytes -> (n, 32) float32: low nibbles are elements 0-15, high ones 16-31."""
    q = torch.empty(qs.shape[0], 2, 16, dtype=torch.float32)  # (n, 2, 16); filled in place,
    q[:, 0].copy_(qs & 0x0F)  # which is 2-3x faster than cat + float
    q[:, 1].copy_(qs >> 4)
    return q.view(-1, 32)


def _scale(blocks: torch.Tensor, at: int) -> torch.Tensor:
    """The float16 at byte `at` of each block, as (n_blocks, 1) float32."""
    return blocks[:, at : at + 2].view(torch.float16).float()


# In-place multiply, then add, each rounded to float32: the same steps as gguf.quants (no FMA),
# so the results are bit-identical.
def _q8_0(raw: torch.Tensor) -> torch.Tensor:
    blocks = raw.view(-1, 34)  # (n_blocks, 34): f16 scale d, 32 int8 q; x = q * d
    return blocks[:, 2:].view(torch.int8).float().mul_(_scale(blocks, 0))


def _q4_0(raw: torch.Tensor) -> torch.Tensor:
    blocks = raw.view(-1, 18)  # (n_blocks, 18): f16 scale d, 16 bytes of nibbles; x = (q - 8) * d
    return _nibbles(blocks[:, 2:]).sub_(8).mul_(_scale(blocks, 0))


def _q4_1(raw: torch.Tensor) -> torch.Tensor:
    blocks = raw.view(-1, 20)  # (n_blocks, 20): f16 d, f16 min m, 16 bytes of nibbles; x = q*d + m
    return _nibbles(blocks[:, 4:]).mul_(_scale(blocks, 0)).add_(_scale(blocks, 2))


_TORCH_DECODERS: dict[GGMLQuantizationType, Callable[[torch.Tensor], torch.Tensor]] = {
    Q.F32: lambda raw: raw.view(torch.float32),
    Q.F16: lambda raw: raw.view(torch.float16).float(),
    Q.BF16: lambda raw: raw.view(torch.bfloat16).float(),
    Q.Q8_0: _q8_0,
    Q.Q4_0: _q4_0,
    Q.Q4_1: _q4_1,
}


def dequantize_tensor(raw: torch.Tensor, qtype: GGMLQuantizationType) -> torch.Tensor:
    """Raw uint8 storage of whole blocks -> flat float32 values."""
    decode = _TORCH_DECODERS.get(qtype)
    if decode is not None:
        return decode(raw).reshape(-1)
    with np.errstate(all="ignore"):  # a NaN scale is reported by the caller, by tensor name
        return torch.from_numpy(dequantize(raw.numpy(), qtype)).reshape(-1)


def _read_tensor(f: io.BufferedReader, t: GGUFTensorInfo) -> torch.Tensor:
    """One tensor's data, decoded to float32 of its shape and checked to be finite."""
    raw = torch.empty(t.n_bytes, dtype=torch.uint8)
    f.seek(t.offset)
    if f.readinto(raw.numpy().data) != t.n_bytes:
        raise GGUFError(f"tensor '{t.name}' runs past the end of the file (truncated?)")
    try:
        values = dequantize_tensor(raw, t.qtype).reshape(t.shape)
    except Exception as exc:  # gguf.quants on a foreign layout; never expected
        raise GGUFError(f"tensor '{t.name}' could not be decoded ({exc})") from exc
    # NaN propagates through min and max, and an infinity is one of them: one fast pass.
    if values.numel() and not all(math.isfinite(v) for v in values.aminmax()):
        raise GGUFError(f"tensor '{t.name}' holds NaN or infinite values (corrupt file?)")
    return values


def load_gguf(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Read, check and dequantize a Llama-family GGUF into Hugging Face-named float tensors."""
    header = read_gguf_header(path)
    config, matched = gguf_model(header)
    tensors: dict[str, torch.Tensor] = {}
    storage: Counter[str] = Counter()
    with Path(path).open("rb") as f:
        for hf, t in matched.items():
            values = _read_tensor(f, t)
            if hf == ROPE_FREQS:
                if not bool((values == 1).all()):
                    raise GGUFError(f"tensor '{t.name}' rescales rotary frequencies: unsupported")
                continue
            if hf.endswith("q_proj.weight"):
                values = unpermute_rotary(values, config.num_heads)
            elif hf.endswith("k_proj.weight"):
                values = unpermute_rotary(values, config.num_kv_heads)
            tensors[hf] = values.to(dtype)
            storage[t.qtype.name] += t.n_elements
    quantization = storage.most_common(1)[0][0]
    return LoadedModel(config, tensors, quantization, dict(header.metadata))
