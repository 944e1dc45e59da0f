"""Batched generation: Augury's engine vs transformers batched generate, one run, same prompts.

    .venv/bin/python bench/bench_engine.py [--threads 2] [--concurrency 1 4 16 64]
        [--device cuda] [--model FILE]

N requests of ~128 prompt tokens each arrive at once and generate 128 tokens each (EOS ignored).
Reports aggregate output tokens/s, time to first token p50/p95, and for Augury the KV cache
memory allocated vs actually holding tokens at the peak, and the step-time split.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bench.common import median, pct, print_table, write_json

TOPICS = [
    "rivers",
    "volcanoes",
    "glass",
    "jazz",
    "bees",
    "satellites",
    "bread",
    "tides",
    "chess",
    "granite",
    "owls",
    "printing",
    "lightning",
    "coral",
    "maps",
    "clocks",
]


def make_prompts(tok: Any, n: int, target: int = 128) -> list[list[int]]:
    prompts = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        text = (
            f"Request {i}. Write a detailed essay about {topic}. Cover history, science, "
            f"everyday uses and surprising facts about {topic}. "
        ) * 8
        ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": text}]))
        prompts.append(ids[: target - 5] + ids[-5:])  # keep the assistant header at the end
    return prompts


def augury_run(engine: Any, prompts: list[list[int]], new: int) -> dict[str, float]:
    from augury.llm.kv_cache import bytes_per_block
    from augury.llm.sampling_params import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=new, ignore_eos=True)
    t0 = time.perf_counter()
    for i, p in enumerate(prompts):
        engine.add_request(f"b{t0}-{i}", p, params)
    first: dict[str, float] = {}
    peak_blocks = peak_tokens = 0
    model_ms, step_ms, book_ms = [], [], []
    while engine.has_unfinished():
        outs = engine.step()
        now = time.perf_counter()
        st = engine.stats()
        model_ms.append(st.last_model_ms)
        book_ms.append(st.last_timing.bookkeeping_ms)
        step_ms.append(st.last_step_ms)
        if st.kv_blocks_used > peak_blocks:
            peak_blocks = st.kv_blocks_used
            peak_tokens = sum(s.num_computed for s in engine.scheduler.running)
        for o in outs:
            if o.request_id not in first and any(d.token_ids for d in o.outputs):
                first[o.request_id] = now - t0
    total = time.perf_counter() - t0
    ttft = list(first.values())
    per_block = bytes_per_block(engine.model.cfg, engine.blocks.block_size, engine.model.dtype)
    return {
        "tok_s": len(prompts) * new / total,
        "ttft_p50_s": pct(ttft, 50),
        "ttft_p95_s": pct(ttft, 95),
        "kv_allocated_mib": engine.blocks.num_blocks * per_block / 2**20,
        "kv_peak_used_mib": peak_blocks * per_block / 2**20,
        "kv_peak_token_mib": peak_tokens * per_block / engine.blocks.block_size / 2**20,
        "step_ms_median": median(step_ms),
        "model_ms_median": median(model_ms),
        "bookkeeping_ms_median": median(book_ms),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def transformers_run(
    model: Any, prompts: list[list[int]], new: int, pad_id: int
) -> dict[str, float]:
    device = model.device
    n = len(prompts)
    width = max(len(p) for p in prompts)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding, as batched generation needs
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    with torch.inference_mode():
        t = time.perf_counter()
        model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=1,
            do_sample=False,
            pad_token_id=pad_id,
        )
        sync(device)
        ttft = time.perf_counter() - t  # every request gets its first token when the batch does
        t = time.perf_counter()
        model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=pad_id,
        )
        sync(device)
        total = time.perf_counter() - t
    return {"tok_s": n * new / total, "ttft_p50_s": ttft, "ttft_p95_s": ttft}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--max-num-batched-tokens", type=int, default=512)
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--model", default=None, help="a GGUF file (default: the bundled SmolLM2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from augury.llm.engine import EngineConfig, LLMEngine

    config = EngineConfig(
        model=args.model,
        device=args.device,
        dtype="bfloat16",
        kv_cache_memory=1 << 30,
        max_num_batched_tokens=args.max_num_batched_tokens,
    )
    engine = LLMEngine.from_config(config)
    tok = engine.tokenizer
    engines = {"augury": engine}
    if args.device.startswith("cuda"):  # the same model, every step eager: what graphs save
        eager = replace(config, cuda_graphs=False)
        engines["augury_eager"] = LLMEngine(engine.model, tok, eager)
    results: dict[str, dict[str, Any]] = {"augury": {}, "augury_eager": {}, "transformers": {}}
    for name, e in engines.items():
        for n in args.concurrency:  # warm-up: kernels built, CUDA graphs of each size captured
            augury_run(e, make_prompts(tok, n), 8)
        for n in args.concurrency:
            results[name][str(n)] = augury_run(e, make_prompts(tok, n), args.new_tokens)
            print(f"{name} n={n}: {results[name][str(n)]}", flush=True)
    if not args.skip_transformers:
        from transformers import AutoModelForCausalLM

        from augury.models.default import default_model_path

        path = Path(args.model) if args.model else default_model_path()
        model = (
            AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, dtype=torch.bfloat16
            )
            .to(args.device)
            .eval()
        )
        transformers_run(model, make_prompts(tok, 2), 4, 2)  # warm-up
        for n in args.concurrency:
            results["transformers"][str(n)] = transformers_run(
                model, make_prompts(tok, n), args.new_tokens, pad_id=2
            )
            print(f"transformers n={n}: {results['transformers'][str(n)]}", flush=True)
    rows = []
    for n in args.concurrency:
        a = results["augury"][str(n)]
        t = results["transformers"].get(str(n), {})
        ratio = a["tok_s"] / t["tok_s"] if t else float("nan")
        eager_tok_s = results["augury_eager"].get(str(n), {}).get("tok_s", float("nan"))
        rows.append(
            [
                n,
                a["tok_s"],
                eager_tok_s,
                t.get("tok_s", float("nan")),
                ratio,
                a["ttft_p50_s"],
                a["ttft_p95_s"],
                t.get("ttft_p50_s", float("nan")),
                a["kv_peak_used_mib"],
                a["kv_peak_token_mib"],
                a["step_ms_median"],
                a["model_ms_median"],
                a["bookkeeping_ms_median"],
            ]
        )
    print_table(
        f"batched generation, bf16, {args.device}, {args.threads} threads, "
        f"~128 prompt + {args.new_tokens} output tokens each",
        [
            "clients",
            "augury tok/s",
            "eager tok/s (cuda)",
            "transformers tok/s",
            "ratio",
            "augury TTFT p50 s",
            "augury TTFT p95 s",
            "transformers TTFT s",
            "KV used MiB (blocks)",
            "KV holding tokens MiB",
            "step ms",
            "model ms",
            "bookkeeping ms",
        ],
        rows,
    )
    a0 = next(iter(results["augury"].values()))
    print(f"KV cache allocated: {a0['kv_allocated_mib']:.0f} MiB")
    write_json("engine", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
