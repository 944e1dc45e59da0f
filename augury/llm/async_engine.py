"""Asynchronous front of the engine: many concurrent `generate()` streams, one step loop.

The step loop runs in its own thread (PyTorch releases the GIL inside its kernels), so the event
loop stays responsive while the model computes. Requests and aborts reach the loop through a
thread-safe inbox that it drains between steps; outputs travel back to each request's asyncio
queue with `call_soon_threadsafe`. Leaving a `generate()` iterator early (client gone, timeout,
cancellation) aborts the request, and its cache blocks are freed before the next step.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from augury.llm.engine import LLMEngine
from augury.llm.outputs import CompletionDelta, EngineStats, RequestOutput, Usage
from augury.llm.sampling_params import SamplingParams

log = logging.getLogger(__name__)


@dataclass
class _Add:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    priority: int
    arrival: float
    sink: asyncio.Queue[RequestOutput | BaseException]
    loop: asyncio.AbstractEventLoop


@dataclass
class _Abort:
    request_id: str


class AsyncEngine:
    """Implements the server's engine-client interface: generate, abort, stats."""

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._inbox: queue.Queue[_Add | _Abort | None] = queue.Queue()
        self._sinks: dict[str, _Add] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stats = engine.stats()
        self._ids = itertools.count()
        self._pending = 0  # submitted but not yet taken in by the loop
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="augury-engine", daemon=True)
            self._thread.start()

    @classmethod
    def load(cls, build: Callable[[], LLMEngine]) -> AsyncEngine:
        """Build the engine in the thread that will step it, and start stepping; returns once
        it is built (raising what `build` raised).

        Loading runs PyTorch's OpenMP-parallel ops, and each thread that does so keeps its own
        OpenMP team; with a second team alive (e.g. the executor thread that loaded the model)
        libgomp oversubscribes the cores and stops spinning, and every op of the stepping
        thread paid a wake-up: small ops ~2.5x slower, decode 168 -> 82 tok/s on 2 cores."""
        built: list[AsyncEngine] = []
        failed: list[BaseException] = []
        ready = threading.Event()

        def main() -> None:
            try:
                built.append(cls(build()))
                built[0]._thread = threading.current_thread()
            except BaseException as exc:  # handed to the caller
                failed.append(exc)
                return
            finally:
                ready.set()
            built[0]._loop()

        thread = threading.Thread(target=main, name="augury-engine", daemon=True)
        thread.start()
        ready.wait()
        if failed:
            raise failed[0]
        return built[0]

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> EngineStats:
        """Figures as of the end of the last step (read without locking the loop)."""
        return self._stats

    def tokenize(self, prompt: str | Seq[int]) -> list[int]:
        return self.engine.tokenize_prompt(prompt)

    async def generate(
        self,
        prompt: str | Seq[int],
        params: SamplingParams,
        request_id: str | None = None,
        priority: int = 0,
    ) -> AsyncIterator[RequestOutput]:
        """Stream a request's deltas until it finishes. Raises ValueError for bad input (before
        the first output) and QueueFullError when too many requests wait."""
        from augury.llm.engine import QueueFullError

        if not self.running:
            raise RuntimeError("engine is not running")
        request_id = request_id or f"req-{uuid.uuid4().hex[:16]}"
        prompt_ids = self.engine.tokenize_prompt(prompt)
        self.engine.check_request(prompt_ids, params)
        with self._lock:
            if self._stats.waiting + self._pending >= self.engine.config.max_waiting:
                raise QueueFullError(
                    f"{self.engine.config.max_waiting} requests are waiting already"
                )
            self._pending += 1
        sink: asyncio.Queue[RequestOutput | BaseException] = asyncio.Queue()
        self._inbox.put(
            _Add(
                request_id,
                prompt_ids,
                params,
                priority,
                time.monotonic(),
                sink,
                asyncio.get_running_loop(),
            )
        )
        finished = False
        try:
            while True:
                item = await sink.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            if not finished:
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        """Ask the loop to drop a request; its blocks are free before the next step runs."""
        self._inbox.put(_Abort(request_id))

    # -- the loop thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            block = not self.engine.has_unfinished()
            if not self._drain(block):
                break
            if not self.engine.has_unfinished():
                continue
            try:
                outputs = self.engine.step()
            except Exception as exc:  # fail the requests in flight, keep serving
                log.exception("engine step failed")
                self._fail_all(exc)
                continue
            self._stats = self.engine.stats()
            for out in outputs:
                add = self._sinks.get(out.request_id)
                if add is None:
                    continue
                if out.finished:
                    del self._sinks[out.request_id]
                self._deliver(add, out)
        self._fail_all(RuntimeError("engine shut down"))

    def _drain(self, block: bool) -> bool:
        """Apply queued adds and aborts; wait for one if `block`. False when told to stop."""
        while True:
            try:
                item = self._inbox.get(block=block, timeout=0.5 if block else None)
            except queue.Empty:
                return not self._stopping.is_set() if block else True
            block = False
            if item is None:
                return False
            if isinstance(item, _Abort):
                self.engine.abort(item.request_id)
                self._sinks.pop(item.request_id, None)
            else:
                with self._lock:
                    self._pending -= 1
                try:
                    self.engine.add_request(
                        item.request_id, item.prompt_ids, item.params, item.priority, item.arrival
                    )
                except Exception as exc:
                    self._deliver(item, exc)
                    continue
                self._sinks[item.request_id] = item
            self._stats = self.engine.stats()

    def _fail_all(self, exc: Exception) -> None:
        for request_id, add in list(self._sinks.items()):
            self.engine.abort(request_id)
            out = RequestOutput(
                request_id,
                [CompletionDelta(index=0, text="", token_ids=[], finish_reason="error")],
                finished=True,
                usage=Usage(len(add.prompt_ids), 0),
                error=str(exc),
            )
            self._deliver(add, out)
        self._sinks.clear()

    def _deliver(self, add: _Add, item: RequestOutput | BaseException) -> None:
        """Hand `item` to the request's event loop. If that loop is closed, nobody can read the
        request any more: abort it rather than let the error kill this thread (and the engine)."""
        try:
            add.loop.call_soon_threadsafe(add.sink.put_nowait, item)
        except RuntimeError:  # "Event loop is closed"
            log.warning("request %s: its event loop is closed; aborting it", add.request_id)
            self.engine.abort(add.request_id)
            self._sinks.pop(add.request_id, None)
            self._stats = self.engine.stats()
