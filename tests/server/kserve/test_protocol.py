"""Output tensors in both encodings, read back by tritonclient's own response parser (the
independent reference): every datatype, an empty tensor, non-contiguous and big-endian arrays,
BYTES that are not UTF-8."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as th

from augury.server.kserve.protocol import encode_output

ARRAYS = {
    "bool": np.array([[True, False], [False, True]]),
    "fp16 strided": np.arange(12, dtype=np.float16).reshape(3, 4)[:, ::2],
    "fp32 empty": np.zeros((0, 3), np.float32),
    "fp64 big-endian": np.array([1.5, -2.25], dtype=">f8"),
    "int64": np.array([[-(2**40), 7]], np.int64),
    "uint8": np.array([0, 255], np.uint8),
    "bytes": np.array([b"a", b"\xff\x00", b""], dtype=object),
}


def answer(outputs: list[tuple[str, np.ndarray[Any, Any]]], binary: bool) -> th.InferResult:
    blobs: list[bytes] = []
    encoded = [encode_output(n, v, None, blobs if binary else None) for n, v in outputs]
    head = orjson.dumps({"model_name": "m", "model_version": "1", "outputs": encoded})
    if not blobs:
        return th.InferResult.from_response_body(head)
    return th.InferResult.from_response_body(b"".join([head, *blobs]), header_length=len(head))


@pytest.mark.parametrize("name", list(ARRAYS))
def test_binary_outputs_read_back_exactly(name: str) -> None:
    value = ARRAYS[name]
    got = answer([("a", np.ones(2, np.float32)), (name, value)], binary=True).as_numpy(name)
    assert got is not None and got.shape == value.shape
    if value.dtype == object:
        assert got.tolist() == value.tolist()
    else:
        assert got.dtype == value.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got, value)


@pytest.mark.parametrize("name", [n for n in ARRAYS if n != "bytes"])
def test_json_outputs_read_back_exactly(name: str) -> None:
    value = ARRAYS[name]
    got = answer([(name, value)], binary=False).as_numpy(name)
    assert got is not None and got.shape == value.shape
    np.testing.assert_array_equal(got, value)


def test_bytes_that_are_not_utf8_are_refused_in_json_by_name() -> None:
    with pytest.raises(ValueError, match="output 'bytes' holds bytes that are not UTF-8"):
        encode_output("bytes", ARRAYS["bytes"], None, None)
