"""Arguments shared by the commands that run a language model."""

from __future__ import annotations

import argparse
import re
from typing import Any

from augury.llm.engine import EngineConfig, LLMEngine
from augury.llm.sampling_params import SamplingParams
from augury.models.quant import QUANTIZATIONS

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "kib": 1 << 10,
    "m": 1e6,
    "mb": 1e6,
    "mib": 1 << 20,
    "g": 1e9,
    "gb": 1e9,
    "gib": 1 << 30,
}


def parse_bytes(text: str) -> int:
    """'512MiB', '2GiB', '1.5G' or a plain number of bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 512MiB, 2GiB or bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=None,
        help="a .gguf file or Hugging Face folder (default: bundled SmolLM2-135M-Instruct)",
    )
    g.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["float32", "bfloat16"],
        help="compute dtype (default bfloat16)",
    )
    g.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    g.add_argument(
        "--enforce-eager",
        action="store_true",
        help="on CUDA, run every step eagerly instead of replaying CUDA graphs of decode steps",
    )
    g.add_argument(
        "--kv-cache-memory",
        type=parse_bytes,
        default=parse_bytes("512MiB"),
        help="KV cache size (default 512MiB)",
    )
    g.add_argument(
        "--quantization",
        default="auto",
        choices=["auto", *QUANTIZATIONS],
        help="weight-only quantization of the decoder's linears (CPU, bfloat16); auto (default): "
        "int4 for a Q4_1 GGUF (lossless) with dense weights above 8 rows, else none",
    )
    g.add_argument(
        "--quantized-max-rows",
        type=int,
        default=None,
        metavar="N",
        help="with --quantization: steps of more than N tokens use dense weights kept beside "
        "the quantized ones (faster batches, more memory); default: quantized only",
    )
    g.add_argument(
        "--num-threads", type=int, default=None, help="torch threads (default: one per core)"
    )


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=0.7, help="0 means greedy (default 0.7)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--min-p", type=float, default=0.0)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--max-tokens", type=int, default=256)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def engine_config_from_args(args: argparse.Namespace, **fields: Any) -> EngineConfig:
    """EngineConfig from the arguments of add_model_args, plus a command's own `fields`."""
    return EngineConfig(
        model=args.model,
        dtype=args.dtype,
        device=args.device,
        cuda_graphs=not args.enforce_eager,
        kv_cache_memory=args.kv_cache_memory,
        quantization=args.quantization,
        quantized_max_rows=args.quantized_max_rows,
        num_threads=args.num_threads,
        **fields,
    )


def engine_from_args(args: argparse.Namespace) -> LLMEngine:
    return LLMEngine.from_config(engine_config_from_args(args))


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        max_tokens=args.max_tokens,
        seed=args.seed,
        stop=tuple(args.stop),
    )
