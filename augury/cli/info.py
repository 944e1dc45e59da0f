"""`augury info [MODEL]`: what a model is and what it needs, read from its headers only.

Nothing is dequantized, so this is quick even for large files; the checks are the loader's own
(a file `info` describes is one `generate` and `serve` can load).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from augury.models.default import default_model_path
from augury.models.loader import WeightsSummary, summarize_weights

# Bytes per element of the dtypes the engine can run the weights and the KV cache in.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


def add_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "info",
        help="describe a model: architecture, size, quantization, memory needed",
        description="Describe a GGUF file or Hugging Face checkpoint directory from its headers.",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="a .gguf file or a Hugging Face directory (default: the bundled model)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def describe(summary: WeightsSummary) -> dict[str, Any]:
    """The facts `augury info` prints, as a JSON-ready dict (sizes in bytes)."""
    cfg = summary.config
    params = summary.num_parameters
    # Per token and layer, the cache holds one key and one value vector per KV head.
    kv_elements = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim
    name = summary.metadata.get("general.name")
    return {
        "path": str(summary.path),
        "format": summary.format,
        "name": name if isinstance(name, str) else summary.path.name,
        "architecture": cfg.architecture,
        "parameters": params,
        "quantization": summary.quantization,
        "storage": {
            kind: {"tensors": tensors, "parameters": n}
            for kind, (tensors, n) in summary.storage.items()
        },
        "context_length": cfg.max_position_embeddings,
        "layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "heads": cfg.num_heads,
        "kv_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "tied_embeddings": cfg.tie_word_embeddings,
        "rope_theta": cfg.rope_theta,
        "file_size": summary.file_size,
        "weights_memory": {dt: params * size for dt, size in DTYPE_BYTES.items()},
        "kv_cache_per_token": {dt: kv_elements * size for dt, size in DTYPE_BYTES.items()},
    }


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _count(n: int) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def format_text(info: dict[str, Any]) -> str:
    """The human-readable report: one aligned `label  value` line per fact."""
    storage = ", ".join(
        f"{kind} ({s['tensors']} tensor{'s' * (s['tensors'] != 1)}, {_count(s['parameters'])})"
        for kind, s in info["storage"].items()
    )
    per = " / ".join(f"{_bytes(n)} {dt}" for dt, n in info["kv_cache_per_token"].items())
    weights = " / ".join(f"{_bytes(n)} {dt}" for dt, n in info["weights_memory"].items())
    rows = [
        ("model", f"{info['name']} ({info['path']})"),
        ("format", info["format"]),
        ("architecture", info["architecture"]),
        ("parameters", f"{_count(info['parameters'])} ({info['parameters']:,})"),
        ("quantization", f"{info['quantization']}; storage: {storage}"),
        ("context length", f"{info['context_length']:,} tokens"),
        ("layers", str(info["layers"])),
        ("heads", f"{info['heads']} query, {info['kv_heads']} key/value, dim {info['head_dim']}"),
        ("hidden size", f"{info['hidden_size']} (MLP {info['intermediate_size']})"),
        ("vocab size", f"{info['vocab_size']:,}" + (", tied embeddings" * info["tied_embeddings"])),
        ("file size", _bytes(info["file_size"])),
        ("weights memory", weights),
        ("KV cache", f"{per} per token"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def run(args: argparse.Namespace) -> int:
    summary = summarize_weights(args.model or default_model_path())
    info = describe(summary)
    print(json.dumps(info, indent=2) if args.json else format_text(info))
    return 0
