"""A tiny KServe-v2-compatible router for the predict playground's browser tests.

The real KServe routes (augury/server/kserve) are built by another part of the project and may
not be mounted by `create_app` yet; this fake speaks the same Open Inference Protocol subset the
page uses (repository index, model metadata, infer) and checks what the page sends.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import JSONResponse

DIGITS = [str(d) for d in range(10)]
IRIS = ["setosa", "versicolor", "virginica"]
IRIS_FEATURES = ["sepal length", "sepal width", "petal length"]

MODELS: dict[str, dict[str, Any]] = {
    "digits": {
        "name": "digits",
        "versions": ["1"],
        "platform": "augury_elm",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        ],
        "parameters": {"task": "classification", "labels": DIGITS},
    },
    "iris": {
        "name": "iris",
        "versions": ["1"],
        "platform": "augury_elm",
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [-1, 3],
                "parameters": {"features": IRIS_FEATURES},
            }
        ],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
        "parameters": {"task": "classification", "labels": IRIS},
    },
}


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferBody(BaseModel):
    inputs: list[Tensor]


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def build_router(received: list[dict[str, Any]]) -> APIRouter:
    """The fake routes; each infer body the page sends is appended to `received`."""
    router = APIRouter()

    @router.post("/v2/repository/index")
    async def index() -> list[dict[str, str]]:
        return [{"name": n, "version": "1", "state": "READY", "reason": ""} for n in MODELS]

    @router.get("/v2/models/{name}")
    async def metadata(name: str) -> JSONResponse:
        if name not in MODELS:
            return JSONResponse({"error": f"model {name!r} not found"}, status_code=404)
        return JSONResponse(MODELS[name])

    @router.post("/v2/models/{name}/infer")
    async def infer(name: str, body: InferBody) -> JSONResponse:
        received.append(body.model_dump())
        (tensor,) = body.inputs
        if name == "digits":
            png = base64.b64decode(tensor.data[0], validate=True)
            if tensor.shape != [1] or not png.startswith(b"\x89PNG\r\n\x1a\n"):
                return JSONResponse({"error": "image must be one base64 PNG"}, status_code=400)
            scores = [3.0 if d == "7" else 1.0 - int(d) / 10 for d in DIGITS]
            outputs = [
                {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["7"]},
                {"name": "probabilities", "datatype": "FP32", "shape": [1, 10],
                 "data": softmax(scores)},
            ]  # fmt: skip
        else:
            if tensor.shape != [1, 3] or len(tensor.data) != 3:
                return JSONResponse({"error": f"bad shape {tensor.shape}"}, status_code=400)
            # The class of the largest feature wins: the answer shows the form's values arrived.
            outputs = [
                {"name": "probabilities", "datatype": "FP32", "shape": [1, 3],
                 "data": softmax([float(v) for v in tensor.data])},
            ]  # fmt: skip
        return JSONResponse({"model_name": name, "model_version": "1", "outputs": outputs})

    return router
