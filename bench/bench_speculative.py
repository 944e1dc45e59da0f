"""Speculative decoding (prompt lookup): acceptance rate and single-stream speed-up per prompt type.

    .venv/bin/python -m bench.bench_speculative [--threads 2] [--new-tokens 96] [--dtype int4]
        [--k 4 8]

Each prompt runs greedily with speculation off and on in the same process; outputs are checked
identical, and the table reports tokens/s for both, the speed-up and the share of drafted tokens
the target accepted.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from bench.common import median, print_table, write_json

ARTICLE = (
    "The city council met on Tuesday to discuss the new tram line. The project will cost 420 "
    "million euros and connect the central station with the university campus and the airport. "
    "Construction starts in March and should take three years. Residents raised concerns about "
    "noise, and the council promised night work would be limited to two weeks per district."
)
CODE = """def parse_config(path):
    with open(path) as f:
        data = json.load(f)
    if "name" not in data:
        raise ValueError("missing name")
    if "version" not in data:
        raise ValueError("missing version")
    return Config(name=data["name"], version=data["version"])
"""
PROMPTS = {
    "summarize": f"Summarize this article in two sentences:\n\n{ARTICLE}",
    "extract": f"{ARTICLE}\n\nList every number mentioned in the article with what it refers to.",
    "edit code": f"Rename the function parse_config to load_config and add a docstring:\n\n{CODE}",
    "open chat": "Tell me a short story about a lighthouse keeper who befriends a seagull.",
}


def run(engine: Any, ids: list[int], new: int) -> tuple[list[int], float, int, int]:
    from augury.llm.sampling_params import SamplingParams

    before = engine.stats()
    engine.add_request(
        f"s{time.perf_counter()}", ids, SamplingParams(temperature=0.0, max_tokens=new)
    )
    tokens: list[int] = []
    t = time.perf_counter()
    while engine.has_unfinished():
        for out in engine.step():
            tokens += out.outputs[0].token_ids
    dt = time.perf_counter() - t
    after = engine.stats()
    proposed = after.spec_proposed_tokens - before.spec_proposed_tokens
    accepted = after.spec_accepted_tokens - before.spec_accepted_tokens
    return tokens, len(tokens) / dt, proposed, accepted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--k", type=int, nargs="+", default=[4], help="draft tokens per step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from augury.llm.engine import EngineConfig, LLMEngine

    plain = LLMEngine.from_config(
        EngineConfig(dtype=args.dtype, speculative_tokens=0, kv_cache_memory=256 << 20)
    )
    specs = {
        k: LLMEngine(
            plain.model,
            plain.tokenizer,
            EngineConfig(dtype=args.dtype, speculative_tokens=k, kv_cache_memory=256 << 20),
        )
        for k in args.k
    }
    tok = plain.tokenizer
    results: dict[str, Any] = {}
    rows = []
    for name, text in PROMPTS.items():
        ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": text}]))
        run(plain, ids, 8)  # warm-up
        base: list[float] = []
        fast: dict[int, list[float]] = {k: [] for k in specs}
        drafted = {k: [0, 0] for k in specs}
        outputs: dict[int, Any] = {}
        for _ in range(args.repeats):  # interleaved, so drift in the machine's speed hits all
            a, rate_a, _, _ = run(plain, ids, args.new_tokens)
            base.append(rate_a)
            for k, spec in specs.items():
                b, rate_b, p, c = run(spec, ids, args.new_tokens)
                fast[k].append(rate_b)
                drafted[k][0] += p
                drafted[k][1] += c
                outputs[k] = b
        for k in specs:
            prop, acc = drafted[k]
            r = {
                "k": k,
                "plain_tok_s": median(base),
                "spec_tok_s": median(fast[k]),
                "speedup": median(fast[k]) / median(base),
                "acceptance": acc / prop if prop else 0.0,
                "identical_output": outputs[k] == a,
                "tokens": len(a),
            }
            results[f"{name}/k={k}"] = r
            rows.append([name, k, r["tokens"], r["plain_tok_s"], r["spec_tok_s"], r["speedup"],
                         r["acceptance"], r["identical_output"]])  # fmt: skip
    print_table(
        f"speculative decoding (prompt lookup), {args.dtype}, {args.threads} threads, greedy",
        [
            "prompt",
            "k",
            "tokens",
            "plain tok/s",
            "speculative tok/s",
            "speed-up",
            "acceptance",
            "identical",
        ],
        rows,
    )
    write_json("speculative", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
