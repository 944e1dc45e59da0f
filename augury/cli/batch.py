"""`augury batch run`: a file of prompts, chat/completions bodies or feature records through a
model, resumable after a crash (see augury/batch/job.py)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
from pathlib import Path
from typing import Any

from augury.batch.job import Job, JobSpec, Task
from augury.batch.predict_task import (
    PredictTask,
    is_predictive_model,
    load_pipeline,
    predict_task,
)
from augury.batch.progress import make_progress
from augury.batch.readers import detect_format
from augury.batch.sql_sink import SqlSink, is_sql_url
from augury.batch.writers import JsonlSink, Sink, open_file_sink
from augury.cli.common import add_model_args, add_sampling_args, engine_config_from_args

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("batch", help="batch inference jobs over large files")
    cmds = p.add_subparsers(dest="batch_command", required=True, metavar="SUBCOMMAND")
    run = cmds.add_parser(
        "run",
        help="run a file through a model (re-run the same command to resume)",
        description="Each row is a prompt, an OpenAI chat/completions request body (or an "
        "OpenAI batch line) for a language model, or a record of features for a predictive "
        "model (--model pointing at a model repository folder with model.toml).",
    )
    add_model_args(run)
    add_sampling_args(run)
    io = run.add_argument_group("job")
    io.add_argument("--input", required=True, help="JSONL, CSV or Parquet file")
    io.add_argument("--output", required=True, help="JSONL/CSV/Parquet file, or a SQLAlchemy URL")
    io.add_argument("--input-format", choices=["jsonl", "csv", "parquet"], default=None)
    io.add_argument("--output-format", choices=["jsonl", "csv", "parquet"], default=None)
    io.add_argument("--table", default=None, help="table name when --output is a SQL URL")
    io.add_argument("--id-column", default=None, help="input column identifying rows")
    io.add_argument("--errors", default=None, help="errors file (default OUTPUT.errors.jsonl)")
    io.add_argument("--checkpoint", default=None, help="default OUTPUT.checkpoint.json")
    io.add_argument("--chunk-rows", type=int, default=None, help="rows per commit")
    io.add_argument("--restart", action="store_true", help="ignore the checkpoint, start over")
    io.add_argument("--chat", action="store_true", help="send plain prompts as user messages")
    io.add_argument("--max-in-flight", type=int, default=64, help="LLM requests in flight")
    io.add_argument("--progress-interval", type=float, default=10.0, help="seconds (no TTY)")
    dist = run.add_argument_group("engine")
    dist.add_argument(
        "--engine", choices=["local", "ray"], default="local",
        help="local: this process; ray: Ray Data over model replicas (docs/batch-ray.md)",
    )  # fmt: skip
    dist.add_argument("--ray-address", default=None, help="Ray cluster (default: a local one)")
    dist.add_argument("--replicas", type=int, default=1, help="model replicas on Ray")
    dist.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs per replica")
    run.set_defaults(func=run_command)


def sampling_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """Request fields the CLI's sampling flags give rows that do not set them."""
    defaults: dict[str, Any] = {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "min_p": args.min_p,
        "repetition_penalty": args.repetition_penalty,
    }
    if args.seed is not None:
        defaults["seed"] = args.seed
    if args.stop:
        defaults["stop"] = list(args.stop)
    return defaults


def job_spec(args: argparse.Namespace, predictive: bool) -> JobSpec:
    source = Path(args.input)
    if not source.is_file():
        raise FileNotFoundError(f"input {source} does not exist")
    fmt = detect_format(source, args.input_format)
    out = str(args.output)
    if is_sql_url(out):
        if not args.table:
            raise ValueError("--output is a SQL URL: name the table with --table")
        base = Path(f"{args.table}.batch")
    else:
        base = Path(out)
    fingerprint = {
        "input": str(source.resolve()),
        "input_bytes": source.stat().st_size,
        "model": str(Path(args.model).resolve()) if args.model else None,
        "output": out if is_sql_url(out) else str(Path(out).resolve()),
        "table": args.table,
        "id_column": args.id_column,
        "task": "predict" if predictive else "llm",
        "sampling": None if predictive else sampling_defaults(args),
        "chat": bool(args.chat),
    }
    default_chunk = 65536 if predictive else 256
    return JobSpec(
        input=source,
        input_format=fmt,
        checkpoint=Path(args.checkpoint or f"{base}.checkpoint.json"),
        fingerprint=fingerprint,
        id_column=args.id_column,
        chunk_rows=args.chunk_rows or default_chunk,
        chunks_in_flight=2,
        restart=args.restart,
    )


def open_sinks(args: argparse.Namespace) -> tuple[Sink, Sink]:
    out = str(args.output)
    if is_sql_url(out):
        sink: Sink = SqlSink(out, args.table)
        errors = Path(args.errors or f"{args.table}.batch.errors.jsonl")
    else:
        sink = open_file_sink(Path(out), detect_format(out, args.output_format))
        errors = Path(args.errors or f"{out}.errors.jsonl")
    return sink, JsonlSink(errors)


def run_command(args: argparse.Namespace) -> int:
    predictive = is_predictive_model(args.model)
    spec = job_spec(args, predictive)
    if args.num_threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.num_threads))
    if args.engine == "ray":
        return _run_on_ray(args, spec, predictive)
    sink, errors = open_sinks(args)
    progress = make_progress(interval_s=args.progress_interval)
    if predictive:
        task: Task = PredictTask(load_pipeline(args.model))
        summary = asyncio.run(Job(spec, task, sink, errors).run(progress))
    else:
        summary = asyncio.run(_run_llm(args, spec, sink, errors, progress))
    return 0 if not summary.cancelled else 1


async def _run_llm(
    args: argparse.Namespace, spec: JobSpec, sink: Sink, errors: Sink, progress: Any
) -> Any:
    from augury.batch.llm_task import LLMTask, offline_state
    from augury.server.engine_client import load_local_engine

    engine = await asyncio.to_thread(load_local_engine, engine_config_from_args(args))
    try:
        task = LLMTask(
            engine, offline_state(), sampling_defaults(args), chat=args.chat,
            max_in_flight=args.max_in_flight,
        )  # fmt: skip
        return await Job(spec, task, sink, errors).run(progress)
    finally:
        await engine.shutdown()


def _run_on_ray(args: argparse.Namespace, spec: JobSpec, predictive: bool) -> int:
    from augury.batch.ray_runner import RayOptions, import_ray, ray_runner

    import_ray()  # a clear error before anything is opened
    if args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {args.replicas}")
    options = RayOptions(
        address=args.ray_address, replicas=args.replicas, gpus_per_replica=args.gpus_per_replica
    )
    if predictive:
        make_task: Any = functools.partial(predict_task, str(Path(args.model).resolve()))
    else:
        make_task = functools.partial(
            llm_task, engine_config_from_args(args), sampling_defaults(args), args.chat,
            args.max_in_flight,
        )  # fmt: skip
    sink, errors = open_sinks(args)
    progress = make_progress(interval_s=args.progress_interval)
    job = Job(spec, OnWorkers(), sink, errors)
    summary = asyncio.run(job.run(progress, ray_runner(make_task, options)))
    return 0 if not summary.cancelled else 1


class OnWorkers:
    """The driver's stand-in task on Ray: the chunks are processed by the workers."""

    async def run_chunk(self, chunk: Any) -> Any:
        raise RuntimeError("on Ray, chunks run in the workers")


def llm_task(config: Any, defaults: dict[str, Any], chat: bool, max_in_flight: int) -> Task:
    """A language-model task with its own engine (built in a Ray worker)."""
    from augury.batch.llm_task import LLMTask, offline_state
    from augury.server.engine_client import load_local_engine

    engine = load_local_engine(config)
    return LLMTask(engine, offline_state(), defaults, chat=chat, max_in_flight=max_in_flight)
