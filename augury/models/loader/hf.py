"""Hugging Face Llama checkpoints: config.json plus safetensors (one file or sharded), checked.

Only safetensors is read. A pickle checkpoint (.bin, .pt) runs arbitrary code when it is
unpickled, so it is refused with the conversion to use instead; torch.load is never called.
Every config key and tensor is checked, and a bad one raises :class:`HFCheckpointError` naming it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from augury.models.config import LlamaConfig, LoadedModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
SUPPORTED_MODEL_TYPES = ("llama",)
MAX_CONFIG_BYTES = 1 << 20
"""A config.json or index larger than this is not a checkpoint description."""

# safetensors dtype names -> torch dtypes we accept for weights.
FLOAT_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
ROTARY_BUFFER = ".rotary_emb.inv_freq"
"""Older checkpoints store the rotary frequencies; the model computes its own."""


class HFCheckpointError(ValueError):
    """A Hugging Face checkpoint that cannot be used, with the key, file or tensor that is wrong."""


@dataclass(frozen=True)
class HFTensorInfo:
    """One tensor as the safetensors header describes it (no data read)."""

    file: Path
    shape: tuple[int, ...]
    dtype: str
    """safetensors name: 'F32', 'BF16', 'F16' ..."""

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class HFHeader:
    """A checkpoint's config and the checked header entry of every tensor the model needs."""

    config: LlamaConfig
    tensors: dict[str, HFTensorInfo]
    """Hugging Face names, exactly the keys of config.expected_shapes()."""
    file_size: int
    """Bytes of config.json and every weight file."""
    metadata: dict[str, object]
    """config.json as read."""


def _read_json(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise HFCheckpointError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HFCheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise HFCheckpointError(f"{path} should hold a JSON object")
    return value


def _int(cfg: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        value = default  # HF writes null for "use the default" (head_dim, num_key_value_heads)
    if value is None:
        raise HFCheckpointError(f"config.json key '{key}' is missing")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise HFCheckpointError(f"config.json key '{key}' should be a positive integer: {value!r}")
    return value


def _float(cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = cfg.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < math.inf:
        raise HFCheckpointError(f"config.json key '{key}' should be a positive number: {value!r}")
    return float(value)


def _rope_theta(cfg: Mapping[str, Any]) -> float:
    """rope_theta, from `rope_parameters` (transformers 5) and/or the top level (transformers 4)."""
    thetas = []
    for key in ("rope_parameters", "rope_scaling"):
        rope = cfg.get(key)
        if rope is None:
            continue
        kind = rope.get("rope_type", rope.get("type")) if isinstance(rope, dict) else rope
        if kind != "default":
            raise HFCheckpointError(f"config.json key '{key}' asks for {kind!r:.60} rope scaling")
        if "rope_theta" in rope:
            thetas.append(_float(rope, "rope_theta", 10000.0))
    if "rope_theta" in cfg or not thetas:
        thetas.append(_float(cfg, "rope_theta", 10000.0))
    if len(set(thetas)) > 1:
        raise HFCheckpointError("config.json keys 'rope_theta' and 'rope_parameters' disagree")
    return thetas[0]


def _token_ids(cfg: Mapping[str, Any], key: str, vocab: int) -> tuple[int, ...]:
    value = cfg.get(key)
    ids = [] if value is None else value if isinstance(value, list) else [value]
    for i in ids:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < vocab:
            raise HFCheckpointError(f"config.json key '{key}' holds {i!r}, not a token id")
    return tuple(ids)


def config_from_hf(cfg: Mapping[str, Any]) -> LlamaConfig:
    """The architecture a config.json describes; unsupported variants are refused by key."""
    if cfg.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise HFCheckpointError(
            f"config.json key 'model_type' is {cfg.get('model_type')!r:.60}; "
            f"supported: {SUPPORTED_MODEL_TYPES}"
        )
    for key, allowed in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)):
        if cfg.get(key, allowed) != allowed:
            raise HFCheckpointError(f"config.json key '{key}' is {cfg[key]!r:.60}; only {allowed}")
    heads = _int(cfg, "num_attention_heads")
    hidden = _int(cfg, "hidden_size")
    vocab = _int(cfg, "vocab_size")
    tie = cfg.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise HFCheckpointError(f"config.json key 'tie_word_embeddings' should be a bool: {tie!r}")
    bos = _token_ids(cfg, "bos_token_id", vocab)
    try:
        return LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=_int(cfg, "intermediate_size"),
            num_layers=_int(cfg, "num_hidden_layers"),
            num_heads=heads,
            num_kv_heads=_int(cfg, "num_key_value_heads", heads),
            max_position_embeddings=_int(cfg, "max_position_embeddings", 2048),
            rms_norm_eps=_float(cfg, "rms_norm_eps", 1e-6),
            rope_theta=_rope_theta(cfg),
            tie_word_embeddings=tie,
            head_dim=_int(cfg, "head_dim", max(hidden // heads, 1)),
            bos_token_id=bos[0] if bos else None,
            eos_token_ids=_token_ids(cfg, "eos_token_id", vocab),
            architecture="llama",
        )
    except ValueError as exc:
        raise HFCheckpointError(
            f"config.json keys 'num_attention_heads' and 'num_key_value_heads': {exc}"
        ) from exc


def _plain_name(name: object, where: str) -> str:
    """A file name inside the checkpoint directory (no path, so no escaping it)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise HFCheckpointError(f"{where} names {name!r:.80}, not a file in the checkpoint")
    return name


def _weight_map(directory: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (from the index, or the single file)."""
    index = directory / INDEX_FILE
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise HFCheckpointError(f"{index}: key 'weight_map' should map tensor names to files")
        return {
            k: directory / _plain_name(v, f"{INDEX_FILE} entry '{k}'")
            for k, v in weight_map.items()
        }
    if (directory / WEIGHTS_FILE).is_file():
        return {}  # filled from the file's own header
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise HFCheckpointError(
            f"{directory} holds only pickle weights ({', '.join(pickles[:3])}); loading them could "
            "run arbitrary code, so Augury reads safetensors only. Convert them where you trust "
            "the source: model.save_pretrained(dir, safe_serialization=True) in transformers."
        )
    raise HFCheckpointError(f"{directory} has no {WEIGHTS_FILE} or {INDEX_FILE}")


def _file_header(path: Path) -> dict[str, HFTensorInfo]:
    if not path.is_file():
        raise HFCheckpointError(f"weight file {path} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            infos = {}
            for name in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                sl = f.get_slice(name)
                infos[name] = HFTensorInfo(path, tuple(sl.get_shape()), sl.get_dtype())
            return infos
    except SafetensorError as exc:
        raise HFCheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc


def _headers(directory: Path) -> dict[str, HFTensorInfo]:
    """Every tensor the checkpoint lists, with its header entry."""
    weight_map = _weight_map(directory)
    if not weight_map:
        return _file_header(directory / WEIGHTS_FILE)
    by_file = {path: _file_header(path) for path in set(weight_map.values())}
    infos = {}
    for name, path in weight_map.items():
        if name not in by_file[path]:
            raise HFCheckpointError(f"tensor '{name}' is listed in {INDEX_FILE} but not in {path}")
        infos[name] = by_file[path][name]
    return infos


def _match(infos: Mapping[str, HFTensorInfo], config: LlamaConfig) -> dict[str, HFTensorInfo]:
    expected = config.expected_shapes()
    for name, info in infos.items():
        if name not in expected:
            if name.endswith(ROTARY_BUFFER) or (
                name == "lm_head.weight" and config.tie_word_embeddings
            ):
                continue
            raise HFCheckpointError(f"tensor '{name}' in {info.file.name} is not part of the model")
        if info.shape != expected[name]:
            raise HFCheckpointError(
                f"tensor '{name}' has shape {info.shape}, expected {expected[name]}"
            )
        if info.dtype not in FLOAT_DTYPES:
            raise HFCheckpointError(
                f"tensor '{name}' has dtype {info.dtype}; supported: {', '.join(FLOAT_DTYPES)}"
            )
    missing = [name for name in expected if name not in infos]
    if missing:
        raise HFCheckpointError(f"tensor '{missing[0]}' is missing ({len(missing)} missing in all)")
    return {name: infos[name] for name in expected}


def read_hf_header(directory: str | os.PathLike[str]) -> HFHeader:
    """Read and check config.json and the safetensors headers (no tensor data is read)."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{directory / CONFIG_FILE} not found (a Hugging Face checkpoint?)")
    cfg = _read_json(directory / CONFIG_FILE)
    config = config_from_hf(cfg)
    tensors = _match(_headers(directory), config)
    files = {directory / CONFIG_FILE, *(info.file for info in tensors.values())}
    return HFHeader(config, tensors, sum(f.stat().st_size for f in files), cfg)


def load_hf(directory: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Read and check a Hugging Face Llama checkpoint into float tensors of `dtype`."""
    header = read_hf_header(directory)
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted({info.file for info in header.tensors.values()}):
        names = [name for name, info in header.tensors.items() if info.file == path]
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in names:
                    tensors[name] = _checked(name, f.get_tensor(name)).to(dtype)
        except SafetensorError as exc:
            raise HFCheckpointError(f"{path} could not be read: {exc}") from exc
    counts: dict[str, int] = {}
    for info in header.tensors.values():
        counts[info.dtype] = counts.get(info.dtype, 0) + info.n_elements
    quantization = max(counts, key=counts.__getitem__)
    return LoadedModel(header.config, tensors, quantization, dict(header.metadata))


def _checked(name: str, values: torch.Tensor) -> torch.Tensor:
    # NaN propagates through min and max, and an infinity is one of them: one fast pass.
    if values.numel() and not all(math.isfinite(v) for v in values.float().aminmax()):
        raise HFCheckpointError(f"tensor '{name}' holds NaN or infinite values")
    return values


def hf_config(config: LlamaConfig, dtype: torch.dtype) -> dict[str, object]:
    """config.json for `config`, readable by transformers 4 (rope_theta) and 5 (rope_parameters)."""
    eos = list(config.eos_token_ids)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "tie_word_embeddings": config.tie_word_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": eos[0] if len(eos) == 1 else eos or None,
        "torch_dtype": DTYPE_NAMES.get(dtype, "float32"),
    }


def save_hf(loaded: LoadedModel, directory: str | os.PathLike[str]) -> Path:
    """Write config.json and model.safetensors, a checkpoint transformers loads; returns the dir.

    The directory is created if needed; one that already holds a different checkpoint (an
    index, other safetensors or pickle files) is refused rather than left ambiguous.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for p in directory.iterdir():
        is_weights = p.name == INDEX_FILE or p.suffix in (*PICKLE_SUFFIXES, ".safetensors")
        if is_weights and p.name != WEIGHTS_FILE:
            raise HFCheckpointError(f"{directory} already holds another checkpoint ({p.name})")
    expected = loaded.config.expected_shapes()
    for name, shape in expected.items():
        if name not in loaded.tensors or tuple(loaded.tensors[name].shape) != shape:
            raise HFCheckpointError(f"tensor '{name}' is missing or not of shape {shape}")
    tensors = {name: loaded.tensors[name].detach().cpu().contiguous() for name in expected}
    dtype = tensors["model.embed_tokens.weight"].dtype
    tmp = directory / (WEIGHTS_FILE + ".partial")
    save_file(tensors, str(tmp), metadata={"format": "pt"})  # "pt": transformers checks it
    tmp.replace(directory / WEIGHTS_FILE)
    text = json.dumps(hf_config(loaded.config, dtype), indent=2) + "\n"
    (directory / CONFIG_FILE).write_text(text, encoding="utf-8")
    return directory
