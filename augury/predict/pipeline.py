"""One model's path from protocol tensors to answers: validate -> preprocess -> run -> postprocess.

`validate` is cheap and runs before a request is queued, so a bad tensor is refused at once.
`execute` takes a whole batch of requests: each is preprocessed alone (a malformed one fails
alone), the rest are merged into one runtime call, postprocessed together and split back in
order. If the merged call itself fails, each request is retried alone so that only the one
at fault gets the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from augury.predict.config import ModelConfig, TensorSpec, kserve_datatype
from augury.predict.errors import InvalidInput
from augury.predict.postprocess import Postprocessor
from augury.predict.preprocess import Preprocessor, build_preprocessor
from augury.predict.runtimes import Runtime, load_runtime

Tensors = dict[str, NDArray[Any]]


@dataclass(frozen=True)
class InferRequest:
    """The tensors of one request (batch dimension first)."""

    inputs: Tensors
    outputs: tuple[str, ...] = ()
    """Outputs asked for; empty: every declared output."""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferResult:
    """The answer to one request."""

    outputs: Tensors
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-output parameters (e.g. regression units)."""


class Pipeline:
    """Validation, pre/post-processing and the runtime of one loaded model version."""

    def __init__(
        self, config: ModelConfig, runtime: Runtime, preprocessor: Preprocessor | None
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.preprocessor = preprocessor
        self.postprocessor = Postprocessor(config)
        accepts = getattr(preprocessor, "accepts", None)
        self.accepted: set[str] = set(accepts()) if accepts else {t.name for t in config.inputs}
        self.known = sorted(self.accepted)
        self._finish = getattr(preprocessor, "finish", None)
        self.outputs = {t.name: t for t in config.outputs}

    @classmethod
    def load(cls, config: ModelConfig, folder: Path) -> Pipeline:
        """Load the runtime and preprocessing of the version folder `folder`."""
        return cls(config, load_runtime(config, folder), build_preprocessor(config, folder))

    # -- before queueing ------------------------------------------------------------------

    def validate(self, request: InferRequest) -> int:
        """The request's row count; InvalidInput naming the tensor that is wrong."""
        known = self.known
        rows: set[int] = set()
        for name, value in request.inputs.items():
            if name not in self.accepted:
                raise InvalidInput(
                    f"unknown input {name!r}; model {self.config.name!r} takes {known}"
                )
            spec = self.config.input(name)
            if spec is not None:
                _check_tensor(spec, value, finite=self.preprocessor is None)
            elif value.dtype.kind not in "fiub":
                raise InvalidInput(f"input {name!r} must be numeric, got {value.dtype}")
            rows.add(int(value.shape[0]) if value.ndim else 1)
        if self.preprocessor is None:
            missing = [t.name for t in self.config.inputs if t.name not in request.inputs]
            if missing:
                raise InvalidInput(f"input {missing[0]!r} is missing; the model takes {known}")
        if not request.inputs:
            raise InvalidInput(f"the request has no inputs; the model takes {known}")
        if len(rows) > 1:
            raise InvalidInput(f"inputs have different batch sizes {sorted(rows)}")
        for name in request.outputs:
            if name not in self.outputs:
                raise InvalidInput(f"unknown output {name!r}; the model has {sorted(self.outputs)}")
        return rows.pop()

    def predict(self, request: InferRequest) -> InferResult:
        """Validate and run one request now (offline use; the server goes through a batcher)."""
        self.validate(request)
        result = self.execute([request])[0]
        if isinstance(result, Exception):
            raise result
        return result

    # -- one batch ------------------------------------------------------------------------

    def execute(self, requests: Sequence[InferRequest]) -> list[InferResult | Exception]:
        """One result or exception per request, in order."""
        results: list[InferResult | Exception | None] = [None] * len(requests)
        ready: list[tuple[int, Tensors]] = []
        for i, request in enumerate(requests):
            try:
                ready.append((i, self._prepare(request)))
            except Exception as exc:
                results[i] = _client_error(exc)
        if ready:
            try:
                answers = self._run([t for _, t in ready], [requests[i] for i, _ in ready])
            except Exception:  # isolate the culprit: each request alone
                answers = []
                for i, tensors in ready:
                    try:
                        answers.append(self._run([tensors], [requests[i]])[0])
                    except Exception as exc:
                        answers.append(_client_error(exc))
            for (i, _), answer in zip(ready, answers, strict=True):
                results[i] = answer
        return [r if r is not None else RuntimeError("no result") for r in results]

    def _prepare(self, request: InferRequest) -> Tensors:
        if self.preprocessor is None:
            return request.inputs
        return self.preprocessor(request.inputs)

    def _run(
        self, prepared: list[Tensors], requests: Sequence[InferRequest]
    ) -> list[InferResult | Exception]:
        counts = [int(next(iter(t.values())).shape[0]) for t in prepared]
        merged = {name: _concat([t[name] for t in prepared]) for name in prepared[0]}
        if self._finish is not None:
            merged = self._finish(merged)
        raw = self.runtime.run(merged)
        outputs = self.postprocessor(raw)
        offsets = np.cumsum(counts)[:-1]
        parts = {  # cast once for the batch, then split
            name: np.split(_cast(self.outputs[name], outputs[name]), offsets)
            for name in self._produced(outputs)
        }
        answers: list[InferResult | Exception] = []
        for j, request in enumerate(requests):
            tensors = {name: parts[name][j] for name in request.outputs or self.outputs}
            params = {n: p for n, p in self.postprocessor.parameters.items() if n in tensors}
            answers.append(InferResult(tensors, params))
        return answers

    def _produced(self, outputs: Tensors) -> list[str]:
        missing = [name for name in self.outputs if name not in outputs]
        if missing:
            raise RuntimeError(
                f"model {self.config.name!r} declares output {missing[0]!r} but its runtime and "
                f"postprocessing produce {sorted(outputs)}; fix [[outputs]] in model.toml"
            )
        return list(self.outputs)


def _check_tensor(spec: TensorSpec, value: NDArray[Any], finite: bool) -> None:
    name = spec.name
    if spec.dtype == "bytes":
        if value.dtype.kind not in "OSU":
            raise InvalidInput(f"input {name!r} must have datatype BYTES, got {_datatype(value)}")
    elif value.dtype != spec.dtype and value.dtype.name != spec.dtype:  # (big-endian data)
        raise InvalidInput(
            f"input {name!r} must have datatype {spec.datatype}, got {_datatype(value)}"
        )
    shape = list(value.shape)
    if len(shape) != len(spec.shape) or any(
        d != -1 and d != s for d, s in zip(spec.shape, shape, strict=True)
    ):
        raise InvalidInput(f"input {name!r} must have shape {list(spec.shape)}, got {shape}")
    if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
        flat = np.flatnonzero(~np.isfinite(value))[0]
        index = list(np.unravel_index(flat, value.shape))
        raise InvalidInput(f"input {name!r} contains NaN or infinity at index {index}")


def _datatype(value: NDArray[Any]) -> str:
    if value.dtype.kind in "OSU":
        return "BYTES"
    try:
        return kserve_datatype(value.dtype.name)
    except KeyError:
        return value.dtype.name


def _concat(arrays: list[NDArray[Any]]) -> NDArray[Any]:
    """Stack along the batch axis, right-padding trailing dimensions with 0 (token ids)."""
    if len(arrays) == 1:
        return arrays[0]
    tail = tuple(max(s) for s in zip(*(a.shape[1:] for a in arrays), strict=True))
    if all(a.shape[1:] == tail for a in arrays):
        return np.concatenate(arrays)
    padded = [
        np.pad(a, [(0, 0)] + [(0, t - s) for s, t in zip(a.shape[1:], tail, strict=True)])
        for a in arrays
    ]
    return np.concatenate(padded)


def _cast(spec: TensorSpec, value: NDArray[Any]) -> NDArray[Any]:
    if spec.dtype == "bytes":
        return value.astype(str).astype(object) if value.dtype != object else value
    return value.astype(spec.dtype, copy=False)


def _client_error(exc: Exception) -> Exception:
    """ValueErrors raised by preprocessing or a lone runtime call are the request's fault."""
    if isinstance(exc, ValueError) and not isinstance(exc, InvalidInput):
        return InvalidInput(str(exc))
    return exc
