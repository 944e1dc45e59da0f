"""The predictive models' path on Ray: the ingress keeps its ModelRepository (validation,
metadata, dynamic batching) and each batch runs on a replica of the model's deployment.

`RayExecutors` is the repository's `executor` factory: a model with a deployment gets a
function that forwards its batches there; any other model runs in the ingress process.
A batch whose replica dies fails with ModelNotReady (KServe 503), which clients may retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from augury.predict.batcher import Execute
from augury.predict.errors import ModelNotReady, PredictError, RequestTimeout
from augury.predict.pipeline import InferRequest, InferResult, Pipeline
from augury.scale.errors import REPLICA_FAILURES, reason, unwrap


class RayExecutors:
    """Executor factory of a ModelRepository (see the module docstring)."""

    def __init__(self, handles: Mapping[str, DeploymentHandle[Any]], timeout_s: float) -> None:
        self._handles = dict(handles)
        self._timeout_s = timeout_s

    @property
    def models(self) -> list[str]:
        return sorted(self._handles)

    def __call__(
        self, name: str, version: int, pipeline: Pipeline
    ) -> Execute[InferRequest, InferResult]:
        handle = self._handles.get(name)
        if handle is None:
            return pipeline.execute
        return RemoteBatch(handle, name, version, self._timeout_s)


class RemoteBatch:
    """Runs one model version's batches on its deployment (called in a batcher thread)."""

    def __init__(
        self, handle: DeploymentHandle[Any], name: str, version: int, timeout_s: float
    ) -> None:
        self._handle = handle
        self._name = name
        self._version = version
        self._timeout_s = timeout_s

    def __call__(self, requests: Sequence[InferRequest]) -> list[InferResult | Exception]:
        call = self._handle.execute.remote(self._version, list(requests))
        try:
            results: list[InferResult | Exception] = call.result(timeout_s=self._timeout_s)
        except RayTaskError as exc:
            cause = unwrap(exc)
            if isinstance(cause, PredictError):
                return [cause] * len(requests)
            raise cause from None
        except REPLICA_FAILURES as exc:
            raise ModelNotReady(
                f"the replica serving model {self._name!r} failed during this batch "
                f"({reason(exc)}); Ray is replacing it, retry the request"
            ) from None
        except TimeoutError:
            call.cancel()
            raise RequestTimeout(
                f"model {self._name!r} did not answer within {self._timeout_s:g} s on Ray"
            ) from None
        return results
