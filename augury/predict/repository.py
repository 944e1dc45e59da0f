"""The model repository: a folder of models, loaded, reloaded and unloaded at run time.

    models/
      fraud/
        model.toml       name, task, runtime, inputs, outputs, pre/postprocessing, batching
        1/ ...           version folders; the highest one is served
        2/ ...

`load(name)` reads the config and the newest version and swaps it in only once it loaded:
a failed load keeps the previous version serving and records the error for the index.
`poll()` (every `poll_interval_s` once started) loads models that appeared and versions
newer than the served one; models unloaded by hand stay unloaded until loaded by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from augury.predict.batcher import DynamicBatcher, Execute
from augury.predict.config import MODEL_TOML, ModelConfig, load_config
from augury.predict.errors import ConfigError, ModelNotFound, ModelNotReady
from augury.predict.pipeline import InferRequest, InferResult, Pipeline
from augury.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ExecutorFactory = Callable[[str, int, Pipeline], Execute[InferRequest, InferResult]]
"""(model name, version, its loaded pipeline) -> the function that runs a batch."""


@dataclass
class ModelVersion:
    """A loaded, servable version of a model."""

    name: str
    version: int
    config: ModelConfig
    pipeline: Pipeline
    batcher: DynamicBatcher[InferRequest, InferResult]

    async def infer(self, request: InferRequest, timeout_s: float | None = None) -> InferResult:
        """Validate `request` (InvalidInput at once), then answer it through the batcher."""
        rows = self.pipeline.validate(request)
        return await self.batcher.submit(request, rows, timeout_s)


@dataclass(frozen=True)
class IndexEntry:
    """One model of the repository index."""

    name: str
    version: int | None
    """The served version, or the newest on disk when none is served."""
    state: str
    """READY or UNAVAILABLE."""
    reason: str = ""
    """Why it is unavailable (the last load error), if it is."""


class ModelRepository:
    """Models under `root`; see the module docstring."""

    def __init__(
        self,
        root: str | Path,
        poll_interval_s: float | None = 5.0,
        batching: dict[str, Any] | None = None,
        executor: ExecutorFactory | None = None,
        blas_threads: int | None = 1,
    ) -> None:
        """batching: overrides of every model's [batching] table (benchmarks, tests).
        executor: where batches run; default: the pipeline, in this process (augury.scale
        passes one that forwards batches to a Ray Serve deployment).
        blas_threads: numpy's BLAS threads for this process, set by `start` (the ELM runtime
        and preprocessing use them). Batches already run one per instance thread, and
        OpenBLAS's idle threads spin on the cores the event loop needs (bench_predict, fraud,
        64 clients: server CPU 185% -> 103% for 15% more requests/s). None leaves them."""
        self.root = Path(root)
        self.blas_threads = blas_threads
        self._executor = executor
        self.poll_interval_s = poll_interval_s
        self.batching = batching or {}
        self._models: dict[str, ModelVersion] = {}
        self._errors: dict[str, str] = {}
        self._failed: dict[str, int] = {}  # name -> version whose load failed (not retried)
        self._unloaded: set[str] = set()
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every model, then poll for changes (when poll_interval_s is set)."""
        if not self.root.is_dir():
            raise ConfigError(f"model repository {self.root} is not a folder")
        if self.blas_threads is not None:
            threadpool_limits(self.blas_threads, user_api="blas")  # process-wide, kept
        await self.poll()
        if self.poll_interval_s:
            self._poller = asyncio.create_task(self._poll_forever(self.poll_interval_s))

    async def stop(self) -> None:
        await cancel_and_wait(self._poller)
        for model in list(self._models.values()):
            await model.batcher.stop()
        self._models.clear()

    # -- lookups --------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Models on disk (folders with a model.toml) and loaded ones."""
        on_disk = {p.parent.name for p in self.root.glob(f"*/{MODEL_TOML}")}
        return sorted(on_disk | set(self._models))

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """The served version of `name`: ModelNotFound, or ModelNotReady when not loaded."""
        model = self._models.get(name)
        if model is None:
            if name not in self.names():
                raise ModelNotFound(
                    f"model {name!r} is not in the repository; see /v2/repository/index"
                )
            why = self._errors.get(name, "it is not loaded")
            raise ModelNotReady(f"model {name!r} is not ready: {why}")
        if version is not None and version != model.version:
            raise ModelNotFound(
                f"model {name!r} version {version} is not served; version {model.version} is"
            )
        return model

    def ready(self) -> list[ModelVersion]:
        return list(self._models.values())

    def index(self) -> list[IndexEntry]:
        entries = []
        for name in self.names():
            model = self._models.get(name)
            if model is not None:
                entries.append(IndexEntry(name, model.version, "READY"))
            else:
                reason = self._errors.get(name, "unloaded" if name in self._unloaded else "")
                entries.append(IndexEntry(name, _latest(self.root / name), "UNAVAILABLE", reason))
        return entries

    # -- changes --------------------------------------------------------------------------

    async def load(self, name: str) -> ModelVersion:
        """Load (or reload) the newest version of `name`; on failure the old one keeps serving."""
        async with self._lock:
            self._unloaded.discard(name)
            folder = self.root / name
            if not (folder / MODEL_TOML).is_file():
                raise ModelNotFound(
                    f"model {name!r} has no folder with a {MODEL_TOML} in {self.root}"
                )
            version = _latest(folder)
            try:
                if version is None:
                    raise ConfigError(f"{folder} has no numbered version folder (e.g. {folder}/1)")
                loaded = await asyncio.to_thread(self._build, folder, version)
            except Exception as exc:
                self._errors[name] = str(exc) or type(exc).__name__
                if version is not None:
                    self._failed[name] = version
                log.warning("model %s version %s failed to load: %s", name, version, exc)
                raise
            old = self._models.get(name)
            self._models[name] = loaded
            self._errors.pop(name, None)
            self._failed.pop(name, None)
        log.info("model %s version %d ready", name, version)
        if old is not None:
            await old.batcher.stop()
        return loaded

    async def unload(self, name: str) -> None:
        """Stop serving `name` (queued requests finish first)."""
        async with self._lock:
            model = self._models.pop(name, None)
            if model is None:
                raise ModelNotFound(f"model {name!r} is not loaded")
            self._unloaded.add(name)
        await model.batcher.stop()

    async def poll(self) -> None:
        """Load new models and newer versions found on disk (errors are recorded, not raised)."""
        for name in self.names():
            if name in self._unloaded or not (self.root / name / MODEL_TOML).is_file():
                continue
            latest = _latest(self.root / name)
            served = self._models.get(name)
            if latest is None or self._failed.get(name) == latest:
                if latest is None and served is None:
                    self._errors[name] = f"{self.root / name} has no numbered version folder"
                continue
            if served is None or latest > served.version:
                with contextlib.suppress(Exception):
                    await self.load(name)

    async def _poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except Exception:  # a broken folder must not stop polling for the others
                log.exception("repository poll failed")

    def _build(self, folder: Path, version: int) -> ModelVersion:
        config = load_config(folder)
        if self.batching:
            config = replace(config, batching=replace(config.batching, **self.batching))
        pipeline = Pipeline.load(config, folder / str(version))
        execute: Execute[InferRequest, InferResult] = pipeline.execute
        if self._executor is not None:
            execute = self._executor(folder.name, version, pipeline)
        batcher: DynamicBatcher[InferRequest, InferResult] = DynamicBatcher(
            execute, config.batching, config.name
        )
        return ModelVersion(folder.name, version, config, pipeline, batcher)


def _latest(folder: Path) -> int | None:
    versions = [int(p.name) for p in folder.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=None)
