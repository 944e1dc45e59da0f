"""Single-stream decode and prefill tokens/s: Augury vs transformers, same prompts, one run.

    .venv/bin/python bench/bench_single_stream.py [--threads 2] [--new-tokens 64]

Decode: greedy generation of --new-tokens after a short chat prompt (time per token after the
first). Prefill: one forward pass over a ~500-token prompt. Medians over --repeats runs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from bench.common import median, print_table, write_json

PROMPT = "Explain, step by step, how a bicycle's gears make climbing hills easier."
LONG = " ".join(
    f"Paragraph {i}: the committee reviewed the quarterly figures, noted the rise in costs, "
    "and asked the engineers for a plan to cut energy use without slowing production."
    for i in range(20)
)


def augury_run(
    dtype: str, prompt_ids: list[int], long_ids: list[int], new: int, repeats: int
) -> dict[str, float]:
    from augury.llm.engine import EngineConfig, LLMEngine
    from augury.llm.sampling_params import SamplingParams

    engine = LLMEngine.from_config(
        # Raw model speed: no prefix cache (the prompts repeat) and no speculation (measured
        # separately by bench_speculative).
        EngineConfig(
            dtype=dtype,
            kv_cache_memory=256 << 20,
            max_num_batched_tokens=1024,
            enable_prefix_caching=False,
            speculative_tokens=0,
        )
    )
    params = SamplingParams(temperature=0.0, max_tokens=new, ignore_eos=True)
    decode, prefill = [], []
    for r in range(repeats + 1):
        engine.add_request(f"d{r}", prompt_ids, params)
        times = []
        while engine.has_unfinished():
            engine.step()
            times.append(time.perf_counter())
        if r:  # first run warms up
            decode.append((len(times) - 2) / (times[-1] - times[1]))
        t = time.perf_counter()
        engine.add_request(f"p{r}", long_ids, SamplingParams(temperature=0.0, max_tokens=1))
        while engine.has_unfinished():
            engine.step()
        if r:
            prefill.append(len(long_ids) / (time.perf_counter() - t))
    return {"decode_tok_s": median(decode), "prefill_tok_s": median(prefill)}


def transformers_run(
    dtype: torch.dtype, prompt_ids: list[int], long_ids: list[int], new: int, repeats: int
) -> dict[str, float]:
    from transformers import AutoModelForCausalLM

    from augury.models.default import default_model_path

    path = default_model_path()
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=dtype
    ).eval()
    decode, prefill = [], []
    with torch.inference_mode():
        for r in range(repeats + 1):
            ids = torch.tensor([prompt_ids])
            out = model(input_ids=ids, use_cache=True)
            past, tok = out.past_key_values, out.logits[0, -1].argmax().view(1, 1)
            t = time.perf_counter()
            for _ in range(new - 1):
                out = model(input_ids=tok, past_key_values=past, use_cache=True)
                past, tok = out.past_key_values, out.logits[0, -1].argmax().view(1, 1)
            if r:
                decode.append((new - 1) / (time.perf_counter() - t))
            t = time.perf_counter()
            model(input_ids=torch.tensor([long_ids]))
            if r:
                prefill.append(len(long_ids) / (time.perf_counter() - t))
    return {"decode_tok_s": median(decode), "prefill_tok_s": median(prefill)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-transformers", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from augury.models.default import default_model_path
    from augury.models.loader.gguf import read_gguf_metadata
    from augury.models.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf_metadata(read_gguf_metadata(default_model_path()))
    prompt_ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": PROMPT}]))
    long_ids = tok.encode(LONG)[:500]
    results: dict[str, Any] = {}
    for dtype in ("float32", "bfloat16"):
        results[f"augury {dtype}"] = augury_run(
            dtype, prompt_ids, long_ids, args.new_tokens, args.repeats
        )
    if not args.skip_transformers:
        for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            results[f"transformers {name}"] = transformers_run(
                dt, prompt_ids, long_ids, args.new_tokens, args.repeats
            )
    rows = [[k, v["decode_tok_s"], v["prefill_tok_s"]] for k, v in results.items()]
    print_table(
        f"single stream, {args.threads} threads, "
        f"decode {args.new_tokens} tokens, prefill {len(long_ids)} tokens",
        ["system", "decode tok/s", "prefill tok/s"],
        rows,
    )
    write_json(
        "single_stream",
        {
            "args": vars(args),
            "prompt_tokens": len(prompt_ids),
            "prefill_tokens": len(long_ids),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
