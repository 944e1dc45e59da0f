"""Time to first token of a chat's second turn, with and without automatic prefix caching.

    .venv/bin/python -m bench.bench_prefix_cache [--threads 2] [--repeat 5]

In-process engine (bundled model, bfloat16 defaults). A first turn (a ~450-token article with a
question) is answered (64 tokens, greedy); the second turn sends the whole conversation plus a
new question, as chat clients do. With prefix caching the second turn finds the first turn's
prompt blocks cached and prefills only the rest; without it, it prefills everything. TTFT =
add_request -> the step that yields the first token; median of --repeat conversations, each
with a different article opening so no run hits another run's cache. Prints a table; writes
bench/results/bench_prefix_cache.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from augury.llm.engine import EngineConfig, LLMEngine
from augury.llm.sampling_params import SamplingParams
from bench.common import median, print_table, write_json

ARTICLE = " ".join(
    f"Paragraph {i}: the harbour town rebuilt its sea wall after the storm, and the council "
    "voted to fund a new ferry line between the islands."
    for i in range(16)
)


def ttft_s(engine: LLMEngine, request_id: str, messages: list[dict[str, str]]) -> float:
    """Seconds from adding the request to the step that yields its first token (the request is
    then run to the end, so its blocks are cached for the next turn)."""
    prompt = engine.tokenizer.apply_chat_template(messages)
    params = SamplingParams(max_tokens=64, temperature=0.0, ignore_eos=True)
    start = time.perf_counter()
    engine.add_request(request_id, prompt, params)
    first = None
    while engine.has_unfinished():
        for out in engine.step():
            if first is None and out.outputs and out.outputs[0].token_ids:
                first = time.perf_counter() - start
    assert first is not None
    return first


def conversation(engine: LLMEngine, n: int) -> dict[str, float]:
    question = {"role": "user", "content": f"Version {n}. {ARTICLE}\nWhat was rebuilt?"}
    turn1 = [question]
    t1 = ttft_s(engine, f"c{n}-1", turn1)
    turn2 = [
        *turn1,
        {"role": "assistant", "content": "The harbour town rebuilt its sea wall."},
        {"role": "user", "content": "And what did the council fund?"},
    ]
    t2 = ttft_s(engine, f"c{n}-2", turn2)
    tokens = len(engine.tokenize_prompt(engine.tokenizer.apply_chat_template(turn2)))
    return {"turn1_s": t1, "turn2_s": t2, "prompt_tokens": float(tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    for cached in (True, False):
        engine = LLMEngine.from_config(EngineConfig(enable_prefix_caching=cached))
        conversation(engine, -1)  # warm-up
        runs = [conversation(engine, n) for n in range(args.repeat)]
        results["cache on" if cached else "cache off"] = {
            "turn1_ttft_s": median([r["turn1_s"] for r in runs]),
            "turn2_ttft_s": median([r["turn2_s"] for r in runs]),
            "turn2_prompt_tokens": runs[0]["prompt_tokens"],
        }
    on, off = results["cache on"], results["cache off"]
    rows = [
        ["first turn TTFT ms", on["turn1_ttft_s"] * 1e3, off["turn1_ttft_s"] * 1e3, ""],
        ["second turn TTFT ms", on["turn2_ttft_s"] * 1e3, off["turn2_ttft_s"] * 1e3,
         f"{off['turn2_ttft_s'] / on['turn2_ttft_s']:.1f}x lower"],
    ]  # fmt: skip
    title = (
        f"Second chat turn ({int(on['turn2_prompt_tokens'])} prompt tokens), prefix cache on vs "
        f"off, {args.threads} threads, median of {args.repeat}"
    )
    print_table(title, ["figure", "cache on", "cache off", "ratio"], rows)
    write_json("bench_prefix_cache", {"config": vars(args), "results": results})


if __name__ == "__main__":
    main()
