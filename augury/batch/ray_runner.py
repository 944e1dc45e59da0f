"""Run a job's chunks on Ray Data: `map_batches` over an actor pool of model replicas.

    pieces (driver) -> ray.data.from_items -> map_batches(ChunkWorker, ActorPoolStrategy(N))
        -> iter_rows in input order (driver) -> Job.apply (sinks + checkpoint)

The driver plans the pieces left after the checkpoint (one per chunk: its first row and byte
offset, so a worker reads its own piece of the input straight from the file), Ray Data sends
them to N actors that each hold one replica of the model, and each actor returns a `Commit`
(results with ids, failures, counts) of its chunk. The driver writes them in input order and
checkpoints after each, exactly as the local runner does, so the output, the errors file and
resuming (re-run the same command) are the same. The input path must be readable at the same
path on every node (a shared file system); sinks are written by the driver only.

`ray` is imported only here, when `--engine ray` is asked for.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from augury.batch.checkpoint import Checkpoint
from augury.batch.job import ChunkRunner, Job, JobSpec, Progress, Task, make_commit
from augury.batch.readers import piece_starts, read_chunks

TaskFactory = Callable[[], Task]
"""Builds a task in a worker (a pickled function: it loads the model there)."""


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    """Cluster to join (`ray start --head` prints it; "auto": the local node's cluster);
    None: start a local Ray instance for this job."""
    replicas: int = 1
    """Model replicas (Ray actors), each running the job's `chunks_in_flight` chunks at once."""
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray (ray[data]): pip install 'augury[ray]'") from None
    return ray


class ChunkWorker:
    """One model replica: reads the pieces it is given and turns each into a Commit."""

    def __init__(self, spec: JobSpec, make_task: TaskFactory) -> None:
        self.spec = spec
        self.loop = asyncio.new_event_loop()  # tasks are async (the LLM engine's API)
        self.task = make_task()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The pieces of a batch run together (as `chunks_in_flight` chunks do locally), so a
        language model's batch stays full while one chunk's last rows finish."""
        pieces = list(zip(batch["start"].tolist(), batch["offset"].tolist(), strict=True))
        commits = self.loop.run_until_complete(self._pieces(pieces))
        return {"start": batch["start"], "commit": np.array(commits, dtype=object)}

    async def _pieces(self, pieces: list[tuple[int, int]]) -> list[bytes]:
        return list(await asyncio.gather(*(self._piece(start, off) for start, off in pieces)))

    async def _piece(self, start: int, offset: int) -> bytes:
        spec = self.spec
        chunks = read_chunks(
            spec.input, spec.input_format, spec.chunk_rows, start, offset if offset >= 0 else None
        )
        chunk = next(chunks)
        result = await self.task.run_chunk(chunk)
        return pickle.dumps(make_commit(spec, chunk, result))


def ray_runner(make_task: TaskFactory, options: RayOptions) -> ChunkRunner:
    """A `Job.run` runner that processes the chunks on Ray (see the module docstring)."""

    async def run(job: Job, ckpt: Checkpoint, progress: Progress | None) -> None:
        await asyncio.to_thread(_run, job, ckpt, progress, make_task, options)

    return run


def _run(
    job: Job, ckpt: Checkpoint, progress: Progress | None, make_task: TaskFactory,
    options: RayOptions,
) -> None:  # fmt: skip
    ray = import_ray()
    spec = job.spec
    pieces = piece_starts(
        spec.input, spec.input_format, spec.chunk_rows, ckpt.counts.rows_done, ckpt.input_offset
    )
    if not pieces:
        return
    started = not ray.is_initialized()
    if started:  # a local instance (address None) or a connection to a cluster
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    try:
        _commit_all(ray, job, ckpt, progress, make_task, options, pieces)
    finally:
        if started:
            ray.shutdown()


def _commit_all(
    ray: Any, job: Job, ckpt: Checkpoint, progress: Progress | None, make_task: TaskFactory,
    options: RayOptions, pieces: list[tuple[int, int | None]],
) -> None:  # fmt: skip
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # commits must come in input order
    items = [{"start": row, "offset": -1 if off is None else off} for row, off in pieces]
    results = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        ChunkWorker,
        fn_constructor_args=(_spec_for_workers(job.spec), make_task),
        batch_size=job.spec.chunks_in_flight,
        compute=ray.data.ActorPoolStrategy(size=options.replicas),
        num_cpus=options.cpus_per_replica,
        num_gpus=options.gpus_per_replica,
    )
    expected = [row for row, _ in pieces]
    for i, row in enumerate(results.iter_rows()):
        if int(row["start"]) != expected[i]:
            raise RuntimeError(f"Ray returned chunk {row['start']} out of order")
        job.apply(ckpt, pickle.loads(row["commit"]))
        if progress is not None:
            progress.update(ckpt.counts)
        if job.cancelled.is_set():
            return


def _spec_for_workers(spec: JobSpec) -> JobSpec:
    """The spec with an absolute input path (workers may start in another folder)."""
    from dataclasses import replace

    return replace(spec, input=Path(spec.input).resolve())
