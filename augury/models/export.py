"""`augury export`: a self-contained model folder that `augury serve --model OUT/` runs offline.

Layout (a Hugging Face-style folder):
- `config.json`: the architecture, plus `"augury_quantization": {"mode", "group_size"}` when
  the decoder's linears are quantized;
- `model.safetensors`: the norms in bfloat16; the embedding (and an untied LM head) as Q8_0
  `model.embed_tokens.codes` (N, K) int8 and `.scales` (N, K / 32) float16 (w = d * code per
  group of 32; folders from before 2026-11-23 hold a bfloat16 `.weight` and still load); for
  each decoder linear (fused `qkv_proj`, `o_proj`, `gate_up_proj`, `down_proj`)
  `<name>.codes` and `<name>.scales`: INT4 codes two to a byte (N, K / 2) uint8 with Q4_1's
  float16 d and m (2, N, K / 32) (w = d * code + m; folders from before 2026-11-23 hold
  bfloat16 scales_and_zeros (K / 32, N, 2) and still load), or INT8 codes (N, K) with bfloat16
  per-row scales (N,);
- `tokenizer.json` and `tokenizer_config.json` (with the chat template).
With `--quantize none` the folder is a plain Hugging Face checkpoint in bfloat16.

Loading a quantized folder builds the quantized layers straight from their codes: no float copy
of the linears is ever made, so start-up is quick and memory stays at the quantized size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from augury.kernels.loader import kernel_ops
from augury.models.config import LlamaConfig, LoadedModel
from augury.models.default import default_model_path
from augury.models.llama import LlamaModel
from augury.models.loader import load_weights
from augury.models.loader.hf import CONFIG_FILE, config_from_hf, hf_config, save_hf
from augury.models.packed import pack_linears
from augury.models.quant import (
    INT4_GROUP,
    Q8Embedding,
    Q8Table,
    Quantization,
    QuantLinear,
    dequantize_q8_0,
    pack_nibbles,
    q4_1_scales,
    quantize_int4,
    quantize_int8,
    quantize_q8_0,
    unpack_nibbles,
)
from augury.models.tokenizer import Tokenizer

QUANT_KEY = "augury_quantization"
WEIGHTS = "model.safetensors"
LINEARS = ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj")
"""The decoder's linear layers, by their module path inside a block (fused layout)."""
SERVING_DTYPE = torch.bfloat16


def export_model(source: str | Path | None, out: str | Path, quantization: Quantization) -> Path:
    """Write the model at `source` (None: the bundled SmolLM2) into the folder `out`."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; export into a new folder")
    path = Path(source) if source else default_model_path()
    loaded = load_weights(path)
    tokenizer = (
        Tokenizer.from_dir(path) if path.is_dir() else Tokenizer.from_gguf_metadata(loaded.metadata)
    )
    out.mkdir(parents=True, exist_ok=True)
    if quantization == "none":
        tensors = {k: v.to(SERVING_DTYPE) for k, v in loaded.tensors.items()}
        save_hf(LoadedModel(loaded.config, tensors, "BF16", loaded.metadata), out)
    else:
        _save_quantized(loaded, out, quantization)
    tokenizer.save(out)
    return out


def _save_quantized(loaded: LoadedModel, out: Path, mode: Quantization) -> None:
    model = LlamaModel(loaded.config)  # float32, fused q/k/v and gate/up
    model.load_weights(loaded.tensors)
    tensors = {  # the same names load_exported reads back
        name: model.get_parameter(name.removeprefix("model.")).to(SERVING_DTYPE)
        for name in _dense_names(loaded.config)
    }
    for table in _tables(loaded.config):  # Q8_0: GGUF's own codes come back exactly
        codes, d = quantize_q8_0(model.get_parameter(table.removeprefix("model.") + ".weight"))
        tensors[table + ".codes"], tensors[table + ".scales"] = codes, d
    for i, block in enumerate(model.blocks()):
        for linear in LINEARS:
            weight = block.get_submodule(linear).get_parameter("weight")
            if mode == "int4":
                codes, scales = quantize_int4(weight)
                codes, scales = pack_nibbles(codes), q4_1_scales(scales)
            else:
                codes, scales = quantize_int8(weight)
                scales = scales.to(SERVING_DTYPE)
            tensors[f"model.layers.{i}.{linear}.codes"] = codes.contiguous()
            tensors[f"model.layers.{i}.{linear}.scales"] = scales.contiguous()
    tmp = out / (WEIGHTS + ".partial")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / WEIGHTS)
    config = hf_config(loaded.config, SERVING_DTYPE)
    config[QUANT_KEY] = {"mode": mode, "group_size": INT4_GROUP if mode == "int4" else None}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def exported_quantization(directory: Path) -> str | None:
    """The quantization of an exported folder, or None for anything else."""
    config_file = directory / CONFIG_FILE
    if not directory.is_dir() or not config_file.is_file():
        return None
    section = json.loads(config_file.read_text(encoding="utf-8")).get(QUANT_KEY)
    return str(section["mode"]) if isinstance(section, dict) and "mode" in section else None


def load_exported(directory: str | Path, dtype: torch.dtype, device: str) -> LlamaModel:
    """Build the model of a quantized export folder (bfloat16, CPU)."""
    directory = Path(directory)
    raw = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    mode = raw[QUANT_KEY]["mode"]
    if mode not in ("int8", "int4"):
        raise ValueError(f"{directory}: unknown {QUANT_KEY}.mode {mode!r}")
    if dtype != SERVING_DTYPE or torch.device(device).type != "cpu":
        raise ValueError(f"{directory} holds {mode} weights: serve it in bfloat16 on the CPU")
    config = config_from_hf(raw)
    with torch.device("meta"):
        model = LlamaModel(config)
    # The file is opened anew for each block: pages of a memory map stay resident until it is
    # closed, so one map held over the whole load put the file's size on top of the copies
    # (an INT4 SmolLM2 export, in-process: peak 492 -> ~434 MiB; served: 521 -> 458 MiB).
    weights = str(directory / WEIGHTS)
    with safe_open(weights, framework="pt") as f:
        names = set(f.keys())
        missing = sorted(_expected_names(config) - names)
        if missing:
            raise ValueError(f"{weights} lacks {len(missing)} tensors, e.g. {missing[0]}")
        for name in _dense_names(config):
            _set_param(model, name.removeprefix("model."), f.get_tensor(name).clone())
    tables = {}
    for name in _tables(config):
        with safe_open(weights, framework="pt") as f:
            tables[name] = _load_table(f, name, names, weights)
    for i, block in enumerate(model.blocks()):
        with safe_open(weights, framework="pt") as f:
            for linear in LINEARS:
                key = f"model.layers.{i}.{linear}"
                codes, scales = f.get_tensor(key + ".codes"), f.get_tensor(key + ".scales")
                # copies: nothing may keep the file's memory map (and its pages) alive
                codes = unpack_nibbles(codes) if mode == "int4" else codes.clone()
                scales = scales.clone()
                parent, _, child = linear.rpartition(".")
                setattr(block.get_submodule(parent), child, QuantLinear(codes, scales, mode))
    embed, head = tables["model.embed_tokens"], tables.get("lm_head")
    if isinstance(embed, Q8Table):  # the kernels are built: serve from the Q8_0 tables
        model.embed_tokens = Q8Embedding(embed)  # type: ignore[assignment]
        model.lm_head = embed if head is None else head  # type: ignore[assignment]
    else:
        _set_param(model, "embed_tokens.weight", embed)
        if head is None:
            model.lm_head.weight = model.embed_tokens.weight
        else:
            assert isinstance(head, torch.Tensor)  # both tables are of one kind
            _set_param(model, "lm_head.weight", head)
    model.rotary.build(torch.device("cpu"))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{directory}: no values for {left[:3]}")
    model = model.to(dtype=dtype).eval()
    model.requires_grad_(False)
    pack_linears(model)  # a dense LM head, where the kernels are not built
    return model


def _dense_names(config: LlamaConfig) -> list[str]:
    names = ["model.norm.weight"]
    for i in range(config.num_layers):
        p = f"model.layers.{i}."
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    return names


def _tables(config: LlamaConfig) -> list[str]:
    """The embedding and an untied LM head: Q8_0 tables (`.codes`, `.scales`) in exports."""
    return ["model.embed_tokens"] + ([] if config.tie_word_embeddings else ["lm_head"])


def _load_table(f: Any, name: str, names: set[str], file: str) -> Q8Table | torch.Tensor:
    """A Q8_0 table of an export (a float tensor where the kernels are not built), or the
    bfloat16 weight that folders written before 2026-11-23 hold."""
    if name + ".codes" in names:
        codes, d = f.get_tensor(name + ".codes").clone(), f.get_tensor(name + ".scales").clone()
        if codes.dtype != torch.int8 or d.dtype != torch.float16 or d.dim() != 2:
            raise ValueError(f"{file}: {name} is not Q8_0 (int8 codes, float16 scales)")
        if kernel_ops() is not None:
            return Q8Table(codes, d)
        return dequantize_q8_0(codes, d)
    if name + ".weight" not in names:
        raise ValueError(f"{file} lacks {name}.codes and {name}.scales")
    weight = f.get_tensor(name + ".weight").clone()
    return Q8Table.from_weight(weight) if kernel_ops() is not None else weight


def _expected_names(config: LlamaConfig) -> set[str]:
    quantized = {
        f"model.layers.{i}.{linear}.{part}"
        for i in range(config.num_layers)
        for linear in LINEARS
        for part in ("codes", "scales")
    }
    return set(_dense_names(config)) | quantized


def _set_param(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_path, _, attr = name.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    setattr(module, attr, nn.Parameter(value, requires_grad=False))
