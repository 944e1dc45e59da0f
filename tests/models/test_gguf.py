"""The GGUF loader: the default model, a tiny synthetic llama, corrupt files, dequantization.

References are independent of our code: gguf.GGUFReader (metadata, tensor directory),
gguf.quants (dequantization) and llama.cpp's converter permutation (written out below).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from augury.models.config import LlamaConfig, LoadedModel
from augury.models.default import default_model_path
from augury.models.loader.gguf import (
    LAYER_NAMES,
    GGUFError,
    dequantize_tensor,
    gguf_model,
    load_gguf,
    read_gguf_header,
    read_gguf_metadata,
    unpermute_rotary,
)

Q = GGMLQuantizationType
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
}


def hf_name(gguf_name: str) -> str:
    """'blk.3.attn_q.weight' -> 'model.layers.3.self_attn.q_proj.weight'."""
    if gguf_name in GLOBAL:
        return GLOBAL[gguf_name]
    _, n, rest = gguf_name.split(".", 2)
    return f"model.layers.{n}.{LAYER_NAMES[rest]}"


# --- the default model -------------------------------------------------------------------------


def test_default_model_config_and_shapes(weights: LoadedModel) -> None:
    """`weights` (tests/conftest.py) is load_gguf of the bundled model."""
    loaded = weights
    cfg = loaded.config
    assert (cfg.num_layers, cfg.hidden_size, cfg.intermediate_size) == (30, 576, 1536)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (9, 3, 64)
    assert (cfg.vocab_size, cfg.max_position_embeddings) == (49152, 8192)
    assert cfg.rope_theta == 100000.0
    assert cfg.rms_norm_eps == pytest.approx(1e-5)
    assert cfg.tie_word_embeddings and "lm_head.weight" not in loaded.tensors
    assert (cfg.bos_token_id, cfg.eos_token_ids) == (1, (2,))
    assert loaded.quantization == "Q4_1"
    assert {k: tuple(v.shape) for k, v in loaded.tensors.items()} == cfg.expected_shapes()
    assert all(v.dtype == torch.float32 for v in loaded.tensors.values())
    assert len(loaded.metadata["tokenizer.ggml.tokens"]) == 49152  # type: ignore[arg-type]


@cache
def default_reader() -> GGUFReader:
    """The gguf package's own reader of the default model (takes seconds: `slow` tests only)."""
    return GGUFReader(default_model_path())


@pytest.mark.slow
def test_default_model_matches_gguf_reference_bit_for_bit(weights: LoadedModel) -> None:
    """Tensors equal gguf.quants' dequantization of GGUFReader's bytes (then unpermuted)."""
    loaded, cfg = weights, weights.config
    reader = default_reader()
    checked = 0
    for t in reader.tensors:
        if t.name.startswith("blk.5.") or t.name in GLOBAL:  # one layer keeps this quick
            want = torch.from_numpy(dequantize(t.data, t.tensor_type).copy())
            want = want.reshape(tuple(reversed(t.shape.tolist())))
            hf = hf_name(t.name)
            if "attn_q" in t.name:
                want = unpermute_rotary(want, cfg.num_heads)
            elif "attn_k" in t.name:
                want = unpermute_rotary(want, cfg.num_kv_heads)
            assert torch.equal(loaded.tensors[hf], want), t.name
            checked += 1
    assert checked == 11


def test_load_to_bfloat16() -> None:
    loaded = load_gguf(default_model_path(), torch.bfloat16)
    assert all(v.dtype == torch.bfloat16 for v in loaded.tensors.values())


# --- the rotary permutation ------------------------------------------------------------------


def converter_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute, verbatim."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


@pytest.mark.parametrize(
    ("n_head", "head_dim", "cols"), [(9, 64, 576), (3, 64, 576), (4, 8, 5), (1, 2, 3)]
)
def test_unpermute_rotary_inverts_the_converter(n_head: int, head_dim: int, cols: int) -> None:
    w = np.random.default_rng(0).standard_normal((n_head * head_dim, cols)).astype(np.float32)
    permuted = converter_permute(w, n_head)
    assert torch.equal(unpermute_rotary(torch.from_numpy(permuted), n_head), torch.from_numpy(w))
    if head_dim > 2:
        assert not np.array_equal(permuted, w)  # the test would prove nothing otherwise


# --- dequantization ------------------------------------------------------------------------------

BLOCK_BYTES = {Q.Q4_0: 18, Q.Q4_1: 20, Q.Q8_0: 34}
SCALE_BYTES = {Q.Q4_0: (0,), Q.Q4_1: (0, 2), Q.Q8_0: (0,)}


@given(
    qtype=st.sampled_from([Q.Q4_0, Q.Q4_1, Q.Q8_0]),
    n_blocks=st.integers(1, 8),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_torch_dequantization_is_bit_exact(qtype: Q, n_blocks: int, data: st.DataObject) -> None:
    size = BLOCK_BYTES[qtype]
    raw = bytearray(data.draw(st.binary(min_size=n_blocks * size, max_size=n_blocks * size)))
    finite16 = st.floats(-65504, 65504, width=16)
    for b in range(n_blocks):
        for at in SCALE_BYTES[qtype]:
            struct.pack_into("<e", raw, b * size + at, data.draw(finite16))
    arr = np.frombuffer(bytes(raw), dtype=np.uint8)
    got = dequantize_tensor(torch.tensor(list(raw), dtype=torch.uint8), qtype)
    assert np.array_equal(
        got.numpy().view(np.uint32), dequantize(arr, qtype).reshape(-1).view(np.uint32)
    )


@pytest.mark.parametrize("qtype", [Q.F16, Q.BF16, Q.Q5_0, Q.Q5_1])
def test_other_types_match_gguf_quants(qtype: Q) -> None:
    values = np.random.default_rng(1).standard_normal((4, 256)).astype(np.float32)
    raw = quantize(values, qtype) if qtype != Q.F16 else values.astype(np.float16).view(np.uint8)
    got = dequantize_tensor(torch.from_numpy(np.ascontiguousarray(raw).reshape(-1).copy()), qtype)
    assert torch.equal(got, torch.from_numpy(dequantize(raw, qtype).reshape(-1).copy()))


# --- a tiny synthetic llama ----------------------------------------------------------------------

TINY = LlamaConfig(
    vocab_size=40, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
    num_kv_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
    tie_word_embeddings=True, bos_token_id=1, eos_token_ids=(2,),
)  # fmt: skip
# One storage type per tensor kind: the torch decoders and one gguf.quants path (Q5_0).
TINY_TYPES = {
    "token_embd.weight": Q.Q8_0, "output_norm.weight": Q.F32, "attn_norm.weight": Q.F32,
    "ffn_norm.weight": Q.F32, "attn_q.weight": Q.Q4_1, "attn_k.weight": Q.Q4_0,
    "attn_v.weight": Q.F16, "attn_output.weight": Q.BF16, "ffn_gate.weight": Q.Q4_1,
    "ffn_up.weight": Q.Q8_0, "ffn_down.weight": Q.Q5_0,
}  # fmt: skip


def tiny_type(gguf_name: str) -> Q:
    """The storage type TINY_TYPES gives a tensor ('blk.0.attn_q.weight' -> Q4_1)."""
    return TINY_TYPES[gguf_name if gguf_name in TINY_TYPES else gguf_name.split(".", 2)[-1]]


TINY_NAMES = [*GLOBAL, *(f"blk.{n}.{k}" for n in range(2) for k in TINY_TYPES if k not in GLOBAL)]


def tiny_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Float32 weights of TINY in Hugging Face row order, keyed by GGUF name."""
    rng = np.random.default_rng(seed)
    shapes = TINY.expected_shapes()
    return {n: rng.standard_normal(shapes[hf_name(n)]).astype(np.float32) for n in TINY_NAMES}


def encode(values: np.ndarray, qtype: Q) -> tuple[np.ndarray, Q | None]:
    """Storage bytes (or array) and the raw type to declare, as llama.cpp's converter does."""
    if qtype == Q.F32:
        return values, None
    if qtype == Q.F16:
        return values.astype(np.float16), None
    if qtype == Q.I32:
        return values.astype(np.int32), None
    if qtype == Q.IQ4_NL:  # gguf.quants cannot quantize it; zeros are valid blocks
        return np.zeros((values.shape[0], values.shape[-1] // 32 * 18), dtype=np.uint8), qtype
    return quantize(values, qtype), qtype


def write_gguf(
    path: Path,
    weights: Mapping[str, np.ndarray],
    types: Mapping[str, Q] | None = None,
    meta: Mapping[str, tuple[Any, GGUFValueType] | None] = {},
    arch: str = "llama",
    cfg: LlamaConfig = TINY,
) -> Path:
    """A GGUF like llama.cpp's converter writes: metadata, then Q/K rows permuted, then data.

    `types` overrides the storage type per GGUF name; `meta` overrides (or with None removes)
    metadata keys.
    """
    w = GGUFWriter(str(path), arch)
    tokens = [f"t{i}" for i in range(cfg.vocab_size)]
    base: dict[str, tuple[Any, GGUFValueType] | None] = {
        f"{arch}.block_count": (cfg.num_layers, GGUFValueType.UINT32),
        f"{arch}.context_length": (cfg.max_position_embeddings, GGUFValueType.UINT32),
        f"{arch}.embedding_length": (cfg.hidden_size, GGUFValueType.UINT32),
        f"{arch}.feed_forward_length": (cfg.intermediate_size, GGUFValueType.UINT32),
        f"{arch}.attention.head_count": (cfg.num_heads, GGUFValueType.UINT32),
        f"{arch}.attention.head_count_kv": (cfg.num_kv_heads, GGUFValueType.UINT32),
        f"{arch}.attention.layer_norm_rms_epsilon": (cfg.rms_norm_eps, GGUFValueType.FLOAT32),
        f"{arch}.rope.freq_base": (cfg.rope_theta, GGUFValueType.FLOAT32),
        f"{arch}.rope.dimension_count": (cfg.head_dim, GGUFValueType.UINT32),
        f"{arch}.vocab_size": (cfg.vocab_size, GGUFValueType.UINT32),
        "tokenizer.ggml.model": ("gpt2", GGUFValueType.STRING),
        "tokenizer.ggml.tokens": (tokens, GGUFValueType.ARRAY),
        "tokenizer.ggml.token_type": ([1] * cfg.vocab_size, GGUFValueType.ARRAY),
        "tokenizer.ggml.scores": ([0.5] * cfg.vocab_size, GGUFValueType.ARRAY),
        "tokenizer.ggml.bos_token_id": (1, GGUFValueType.UINT32),
        "tokenizer.ggml.eos_token_id": (2, GGUFValueType.UINT32),
        "tokenizer.ggml.add_bos_token": (False, GGUFValueType.BOOL),
        "general.file_type": (3, GGUFValueType.UINT32),
        "test.i8": (-5, GGUFValueType.INT8),
        "test.u16": (65535, GGUFValueType.UINT16),
        "test.i64": (-(2**40), GGUFValueType.INT64),
        "test.f64": (0.1, GGUFValueType.FLOAT64),
        "test.u64s": ([2**63, 1], GGUFValueType.ARRAY),
    }
    for key, item in {**base, **meta}.items():
        if item is not None:
            value, vtype = item
            sub = GGUFValueType.UINT64 if key == "test.u64s" else None  # too big for the default
            w.add_key_value(key, value, vtype, sub)
    for name, values in weights.items():
        if "attn_q" in name or "attn_k" in name:
            heads = cfg.num_heads if "attn_q" in name else cfg.num_kv_heads
            values = converter_permute(values, heads)
        qtype = tiny_type(name) if name in TINY_NAMES else Q.F32
        qtype = (types or {}).get(name, qtype)
        data, raw_dtype = encode(values, qtype)
        w.add_tensor(name, data, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def roundtrip(values: np.ndarray, qtype: Q) -> torch.Tensor:
    data, _ = encode(values, qtype)
    if qtype in (Q.F32, Q.F16):
        return torch.from_numpy(data.astype(np.float32))
    return torch.from_numpy(dequantize(data, qtype).reshape(values.shape).copy())


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf", tiny_weights())


def test_tiny_model_loads_exactly(tiny: Path) -> None:
    loaded = load_gguf(tiny)
    assert loaded.config == replace(TINY, rms_norm_eps=float(np.float32(TINY.rms_norm_eps)))
    assert loaded.quantization == "Q4_1"
    for gguf_name, values in tiny_weights().items():
        hf = hf_name(gguf_name)
        want = roundtrip(values, tiny_type(gguf_name))
        assert torch.equal(loaded.tensors[hf], want), gguf_name


def test_header_matches_gguf_reader(tiny: Path) -> None:
    """Our bounded parser reads exactly what the gguf package's reader reads."""
    reader = GGUFReader(tiny)
    want = {}
    for key, field in reader.fields.items():
        if not key.startswith("GGUF."):
            value = field.contents()
            want[key] = value.item() if isinstance(value, np.generic) else value
    header = read_gguf_header(tiny)
    assert header.metadata == want
    assert [(t.name, t.qtype, t.offset, t.n_bytes) for t in header.tensors] == [
        (t.name, t.tensor_type, t.data_offset, t.n_bytes) for t in reader.tensors
    ]


@pytest.mark.slow
def test_default_header_matches_gguf_reader() -> None:
    reader = default_reader()
    meta = read_gguf_metadata(default_model_path())
    for key, field in reader.fields.items():
        if not key.startswith("GGUF."):
            value = field.contents()
            assert meta[key] == (value.item() if isinstance(value, np.generic) else value), key


# --- refusals, each naming the key or tensor -----------------------------------------------------


def load_error(path: Path) -> str:
    with pytest.raises(GGUFError) as info:
        load_gguf(path)
    return str(info.value)


def test_unknown_architecture(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", tiny_weights(), arch="gpt2")
    assert "'general.architecture'" in load_error(path) and "gpt2" in load_error(path)


@pytest.mark.parametrize(
    ("tensor", "qtype"), [("blk.0.attn_norm.weight", Q.I32), ("blk.1.attn_q.weight", Q.IQ4_NL)]
)
def test_unsupported_tensor_type(tmp_path: Path, tensor: str, qtype: Q) -> None:
    path = write_gguf(tmp_path / "m.gguf", tiny_weights(), types={tensor: qtype})
    message = load_error(path)
    assert f"'{tensor}'" in message and qtype.name in message


def test_wrong_shape(tmp_path: Path) -> None:
    weights = tiny_weights()
    weights["blk.1.ffn_up.weight"] = weights["blk.1.ffn_up.weight"][:32]
    message = load_error(write_gguf(tmp_path / "m.gguf", weights))
    assert "'blk.1.ffn_up.weight'" in message and "(32, 32)" in message and "(64, 32)" in message


def test_missing_tensor(tmp_path: Path) -> None:
    weights = tiny_weights()
    del weights["blk.1.ffn_down.weight"]
    message = load_error(write_gguf(tmp_path / "m.gguf", weights))
    assert "'blk.1.ffn_down.weight'" in message and "missing" in message


def test_unknown_tensor(tmp_path: Path) -> None:
    weights = {**tiny_weights(), "blk.0.attn_q.bias": np.zeros(32, dtype=np.float32)}
    assert "'blk.0.attn_q.bias'" in load_error(write_gguf(tmp_path / "m.gguf", weights))


def test_truncated_file(tiny: Path, tmp_path: Path) -> None:
    data = tiny.read_bytes()
    header = read_gguf_header(tiny)
    last = max(header.tensors, key=lambda t: t.offset)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: last.offset + 10])
    message = load_error(cut)
    assert f"'{last.name}'" in message and "truncated" in message
    cut.write_bytes(data[:300])  # inside the metadata
    assert "metadata key" in load_error(cut) and "truncated" in load_error(cut)
    cut.write_bytes(data[:10])
    assert "too short" in load_error(cut)


@pytest.mark.parametrize("key", ["llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_non_finite_metadata(tmp_path: Path, key: str, value: float) -> None:
    path = write_gguf(
        tmp_path / "m.gguf", tiny_weights(), meta={key: (value, GGUFValueType.FLOAT32)}
    )
    assert f"'{key}'" in load_error(path)


@pytest.mark.parametrize(
    ("key", "item"),
    [
        ("llama.block_count", None),
        ("llama.attention.head_count", (0, GGUFValueType.UINT32)),
        ("llama.attention.head_count_kv", (3, GGUFValueType.UINT32)),
        ("llama.context_length", ("long", GGUFValueType.STRING)),
        ("llama.rope.dimension_count", (4, GGUFValueType.UINT32)),
        ("llama.expert_count", (8, GGUFValueType.UINT32)),
        ("llama.rope.scaling.type", ("yarn", GGUFValueType.STRING)),
        ("tokenizer.ggml.bos_token_id", (40, GGUFValueType.UINT32)),
        ("llama.vocab_size", (10, GGUFValueType.UINT32)),
        ("general.alignment", (24, GGUFValueType.UINT32)),
    ],
)
def test_bad_metadata(tmp_path: Path, key: str, item: tuple[Any, GGUFValueType] | None) -> None:
    path = write_gguf(tmp_path / "m.gguf", tiny_weights(), meta={key: item})
    assert f"'{key}'" in load_error(path)


@pytest.mark.parametrize(
    "tensor", ["output_norm.weight", "blk.1.attn_q.weight", "token_embd.weight"]
)
def test_non_finite_weights(tiny: Path, tmp_path: Path, tensor: str) -> None:
    t = next(t for t in read_gguf_header(tiny).tensors if t.name == tensor)
    data = bytearray(tiny.read_bytes())
    if t.qtype == Q.F32:
        struct.pack_into("<f", data, t.offset + 4, math.nan)
    else:  # the float16 scale of the second block
        struct.pack_into("<e", data, t.offset + BLOCK_BYTES[t.qtype], math.inf)
    path = tmp_path / "nan.gguf"
    path.write_bytes(bytes(data))
    assert f"'{tensor}'" in load_error(path) and "NaN or infinite" in load_error(path)


def _raw_header(
    n_tensors: int, n_kv: int, body: bytes = b"", magic: bytes = b"GGUF", version: int = 3
) -> bytes:
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv) + body + bytes(512)


def _kv(key: bytes, vtype: int, payload: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key + struct.pack("<I", vtype) + payload


def _ti(name: bytes, dims: Sequence[int], qtype: int, offset: int) -> bytes:
    """A tensor directory entry."""
    head = struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
    return head + struct.pack(f"<{len(dims)}QIQ", *dims, qtype, offset)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_raw_header(0, 0, magic=b"GGML"), "not a GGUF file"),
        (_raw_header(0, 0, version=1), "version 1"),
        (_raw_header(0, 0, version=3 << 24), "big-endian"),
        (_raw_header(2**62, 0), "claims"),
        (_raw_header(0, 2**62), "claims"),
        (_raw_header(0, 1, _kv(b"big", 9, struct.pack("<IQ", 0, 2**60))), "'big'"),  # u8 array
        (_raw_header(0, 1, _kv(b"big", 9, struct.pack("<IQ", 8, 2**20))), "'big'"),  # strings
        (_raw_header(0, 1, _kv(b"deep", 9, struct.pack("<IQ", 9, 1))), "array of arrays"),
        (_raw_header(0, 1, _kv(b"s", 8, struct.pack("<Q", 2**63))), "'s'"),
        (_raw_header(0, 1, _kv(b"t", 99, b"")), "unknown value type 99"),
        (_raw_header(0, 1, _kv(b"\xff", 4, bytes(4))), "UTF-8"),
        (_raw_header(0, 2, _kv(b"k", 4, bytes(4)) * 2), "'k' appears twice"),
        (_raw_header(2, 0, _ti(b"a", [32], 0, 0) + _ti(b"a", [32], 0, 128)), "'a' appears twice"),
        (_raw_header(2, 0, _ti(b"a", [32], 0, 0) + _ti(b"b", [32], 0, 64)), "'b' overlaps"),
        (_raw_header(1, 0, _ti(b"a", [32], 0, 8)), "'a': data offset 8"),
        (_raw_header(1, 0, _ti(b"a", [32], 0, 2**40)), "'a' runs past the end"),
        (_raw_header(1, 0, _ti(b"a", [32], 77, 0)), "'a' has unknown storage type 77"),
        (_raw_header(1, 0, _ti(b"a", [30], 2, 0)), "'a': row length 30"),
        (_raw_header(1, 0, _ti(b"a", [1] * 5, 0, 0)), "'a' has 5 dimensions"),
    ],
)
def test_corrupt_headers(tmp_path: Path, data: bytes, needle: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError) as info:
        read_gguf_header(path)
    assert needle in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_gguf(tmp_path / "nope.gguf")


# --- fuzzing: corrupt files load correctly or raise GGUFError, nothing else ----------------------

# 8-byte values that make lengths and counts absurd when they land on one.
NASTY_U64 = [0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, 12345678901]


def corrupted(data: bytes, edits: Sequence[tuple[int, int, bool]], cut: int | None) -> bytes:
    """`data` with single bytes or little-endian u64s overwritten, then cut."""
    out = bytearray(data)
    for offset, value, wide in edits:
        if wide:
            raw = struct.pack("<Q", NASTY_U64[value % len(NASTY_U64)])
            out[offset : offset + 8] = raw[: len(out) - offset]
        else:
            out[offset] = value % 256
    return bytes(out[:cut])


def edits_in(size: int, *hot: tuple[int, int]) -> st.SearchStrategy[list[tuple[int, int, bool]]]:
    """Up to 6 edits, most of them in the `hot` (start, end) byte ranges."""
    offset = st.one_of(*(st.integers(a, b - 1) for a, b in hot), st.integers(0, size - 1))
    return st.lists(st.tuples(offset, st.integers(0, 2**16), st.booleans()), max_size=6)


def check_load(path: Path) -> None:
    try:
        loaded = load_gguf(path)
    except GGUFError as exc:
        event("refused", "metadata" if "metadata" in str(exc) else "other")
        return
    event("loaded")
    assert {k: tuple(v.shape) for k, v in loaded.tensors.items()} == loaded.config.expected_shapes()
    assert all(bool(torch.isfinite(v).all()) for v in loaded.tensors.values())


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    """The tiny model's bytes, and where its tensor data starts."""
    path = write_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", tiny_weights())
    return path.read_bytes(), min(t.offset for t in read_gguf_header(path).tensors)


@FUZZ
@given(data=st.data())
def test_fuzz_tiny_model(tiny_file: tuple[bytes, int], tmp_path: Path, data: st.DataObject) -> None:
    original, data_start = tiny_file
    edits = data.draw(edits_in(len(original), (0, data_start)))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(original))))
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(corrupted(original, edits, cut))
    check_load(path)


@pytest.fixture(scope="module")
def default_header() -> tuple[bytes, int]:
    """The default model's bytes before its tensor data, and the file size."""
    path = default_model_path()
    start = min(t.offset for t in read_gguf_header(path).tensors)
    with path.open("rb") as f:
        return f.read(start), path.stat().st_size


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_default_model_header(
    default_header: tuple[bytes, int], tmp_path: Path, data: st.DataObject
) -> None:
    """Corrupt the real header; the data region is left sparse (zeros) to keep this fast."""
    head, size = default_header
    directory = head.find(b"token_embd.weight") - 8  # the first entry of the tensor directory
    edits = data.draw(edits_in(len(head), (0, 2048), (directory, len(head))))
    cut = data.draw(st.one_of(st.none(), st.integers(0, size)))
    path = tmp_path / "fuzz.gguf"
    with path.open("wb") as f:
        f.write(corrupted(head, edits, cut))
        f.truncate(size if cut is None else min(cut, size))
    try:
        config, matched = gguf_model(read_gguf_header(path))
    except GGUFError as exc:
        event("refused", "metadata" if "metadata" in str(exc) else "other")
        return
    event("loaded")
    assert set(matched) - {"rope_freqs.weight"} == set(config.expected_shapes())
    assert all(t.offset + t.n_bytes <= size for t in matched.values())
