"""Frame parsing: every bad frame becomes a FrameError with a code and a readable message."""

from __future__ import annotations

import numpy as np
import pytest

from augury.stream.protocol import (
    EventFrame,
    FrameError,
    OpenFrame,
    encode_binary,
    parse_binary,
    parse_text,
)


def test_valid_frames_parse() -> None:
    frame = parse_text('{"type": "open", "model": "zscore", "channels": ["x"]}')
    assert isinstance(frame, OpenFrame) and frame.options.overflow == "block"
    event = parse_text('{"type": "event", "id": 3, "t": 1.5, "values": {"x": 2}}')
    assert isinstance(event, EventFrame) and event.values == {"x": 2.0}


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("{not json", "invalid_json", "not valid JSON"),
        ('{"type": "nope"}', "invalid_frame", "'type' must be one of"),
        ('{"type": "event", "t": 1, "values": {}, "color": 1}', "unknown_field", "color"),
        ('{"type": "event", "t": NaN, "values": {"x": 1}}', "non_finite", "t: must be a finite"),
        ('{"type": "event", "t": 1, "values": {"x": "a"}}', "invalid_frame", "values.x"),
        ('{"type": "open", "model": "m", "channels": []}', "invalid_frame", "channels"),
    ],
)
def test_bad_text_frames(text: str, code: str, words: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_text(text)
    assert info.value.code == code and words in info.value.message


def test_binary_round_trip() -> None:
    rows = np.array([[0.0, 1.0, 2.0], [0.01, 3.0, 4.0]], dtype=np.float32)
    first, t0, got = parse_binary(encode_binary(7, 1e9, rows), 2)
    assert (first, t0) == (7, 1e9)
    np.testing.assert_array_equal(got, rows)


def test_bad_binary_frames() -> None:
    rows = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(FrameError, match="rows of 12 bytes") as info:
        parse_binary(encode_binary(0, 0.0, rows)[:-1], 2)
    assert info.value.code == "wrong_length"
    rows[1, 2] = np.nan
    with pytest.raises(FrameError, match="NaN or infinity at row 1"):
        parse_binary(encode_binary(0, 0.0, rows), 2)
