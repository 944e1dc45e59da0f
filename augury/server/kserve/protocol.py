"""KServe v2 request bodies (pydantic at the edge) and tensor <-> numpy conversion.

JSON tensors carry `data` flat or nested in row-major order. With the binary tensor extension
(what tritonclient sends by default) the JSON header is followed by raw tensor bytes: the
header's length is in `Inference-Header-Content-Length`, and each such input names its byte
count in `parameters.binary_data_size`; BYTES elements are 4-byte little-endian lengths
followed by the bytes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from augury.predict.config import KSERVE_TO_NUMPY, kserve_datatype
from augury.predict.errors import InvalidInput


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


def decode_input(tensor: RequestInput, binary: memoryview | None) -> NDArray[Any]:
    """The tensor as a numpy array of its shape; InvalidInput naming it when inconsistent."""
    name, datatype = tensor.name, tensor.datatype.upper()
    if datatype not in KSERVE_TO_NUMPY:
        raise InvalidInput(
            f"input {name!r} has unknown datatype {tensor.datatype!r}; "
            f"use one of {', '.join(KSERVE_TO_NUMPY)}"
        )
    if any(d < 0 for d in tensor.shape):
        raise InvalidInput(f"input {name!r} has a negative dimension in shape {tensor.shape}")
    count = math.prod(tensor.shape)
    if binary is not None:
        values = _from_binary(name, datatype, binary, count)
    elif tensor.data is None:
        raise InvalidInput(f"input {name!r} has no data")
    else:
        values = _from_json(name, datatype, tensor.data)
    if values.size != count:
        raise InvalidInput(
            f"input {name!r} has {values.size} values but shape {tensor.shape} needs {count}"
        )
    return values.reshape(tensor.shape)


def _from_json(name: str, datatype: str, data: Any) -> NDArray[Any]:
    if datatype == "BYTES":
        flat = np.asarray(data, dtype=object).ravel()
        if not all(isinstance(x, str) for x in flat):
            raise InvalidInput(f"input {name!r} of datatype BYTES must hold strings")
        return flat
    dtype = np.dtype(KSERVE_TO_NUMPY[datatype])
    try:
        raw = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"input {name!r} has ragged nested data") from None
    if raw.dtype.kind not in "biuf" or (dtype.kind in "iub" and raw.dtype.kind == "f"):
        raise InvalidInput(
            f"input {name!r} holds values that are not {datatype}, e.g. {raw.flat[0]!r}"
        )
    if dtype.kind == "b" and raw.dtype.kind != "b":
        raise InvalidInput(f"input {name!r} of datatype BOOL must hold true/false")
    return raw.astype(dtype, copy=False).ravel()


def _from_binary(name: str, datatype: str, data: memoryview, count: int) -> NDArray[Any]:
    if datatype != "BYTES":
        dtype = np.dtype(KSERVE_TO_NUMPY[datatype]).newbyteorder("<")
        if len(data) != count * dtype.itemsize:
            raise InvalidInput(
                f"input {name!r} has {len(data)} bytes of binary data; {count} {datatype} "
                f"values need {count * dtype.itemsize}"
            )
        return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))
    items: list[bytes] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidInput(f"input {name!r}: truncated BYTES element length")
        (size,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + size > len(data):
            raise InvalidInput(f"input {name!r}: a BYTES element runs past the binary data")
        items.append(bytes(data[offset : offset + size]))
        offset += size
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def split_binary(
    request: InferenceRequest, body: bytes, header_length: int
) -> list[memoryview | None]:
    """The binary section of each input (None for JSON inputs), in input order."""
    view = memoryview(body)[header_length:]
    parts: list[memoryview | None] = []
    offset = 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            parts.append(None)
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(view):
            raise InvalidInput(f"input {tensor.name!r}: binary_data_size {size!r} exceeds the body")
        parts.append(view[offset : offset + size])
        offset += size
    return parts


def binary_outputs(request: InferenceRequest) -> tuple[bool, dict[str, bool]]:
    """Which outputs to answer as binary data: the request's `binary_data_output` (default
    for every output; tritonclient sets it when no outputs are named) and each named output's
    `binary_data`, which overrides it."""
    default = _flag(request.parameters, "binary_data_output", "parameters")
    chosen = {
        o.name: _flag(o.parameters, "binary_data", f"output {o.name!r} parameters", default)
        for o in request.outputs or ()
    }
    return default, chosen


def _flag(params: dict[str, Any] | None, key: str, where: str, default: bool = False) -> bool:
    value = (params or {}).get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}.{key} must be true or false, got {value!r}")
    return value


def encode_output(
    name: str, value: NDArray[Any], parameters: dict[str, Any] | None, binary: list[bytes] | None
) -> dict[str, Any]:
    """An output tensor: its data in JSON, or, when `binary` is a list, appended to it as raw
    little-endian bytes (BYTES elements each after a 4-byte length) with the byte count in
    `parameters.binary_data_size`."""
    text = value.dtype.kind in "OSU"
    out: dict[str, Any] = {
        "name": name,
        "datatype": "BYTES" if text else _DATATYPES.get(value.dtype) or _datatype_of(value),
        "shape": list(value.shape),
    }
    if binary is None:
        if text:
            flat = value.ravel()
            try:
                out["data"] = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
            except UnicodeDecodeError:
                raise ValueError(
                    f"output {name!r} holds bytes that are not UTF-8; JSON cannot carry them: "
                    "ask for it with binary_data"
                ) from None
        else:
            out["data"] = value.ravel().tolist()
        if parameters:
            out["parameters"] = parameters
        return out
    if text:
        items = [x if isinstance(x, bytes) else str(x).encode() for x in value.ravel()]
        raw = b"".join(struct.pack("<I", len(x)) + x for x in items)
    else:
        raw = np.ascontiguousarray(value, value.dtype.newbyteorder("<")).tobytes()
    binary.append(raw)
    out["parameters"] = {**(parameters or {}), "binary_data_size": len(raw)}
    return out


_DATATYPES = {np.dtype(v): k for k, v in KSERVE_TO_NUMPY.items() if k != "BYTES"}
"""numpy dtype -> KServe datatype (a dict lookup: `dtype.name` is slow on the hot path)."""


def _datatype_of(value: NDArray[Any]) -> str:
    """The datatype of a dtype the dict does not hold (e.g. big-endian)."""
    return kserve_datatype(value.dtype.name)
