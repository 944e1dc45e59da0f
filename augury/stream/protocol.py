"""The frames of `/v1/streams` (pydantic at the edge).

Client -> server (text frames are JSON objects with a "type"):

    {"type": "open", "model": "zscore", "channels": ["x", "y"],
     "window": {"kind": "count", "size": 64, "stride": 32}, "options": {...}}
    {"type": "resume", "session_id": "...", "resume_token": "...", "last_result_seq": 41}
    {"type": "event", "id": 7, "t": 12.5, "values": {"x": 0.1, "y": 2.0}, "label": 1.0}
    {"type": "batch", "events": [{"id": 8, "t": 12.51, "values": {...}}, ...]}
    {"type": "stats"}                      ask for the counters
    {"type": "close"}                      end the session (no resume)

Binary frames carry events at high rates: a little-endian header of the first event's id
(uint64) and a base time t0 (float64), then float32 rows (dt, v_1, ..., v_c) with the
channels in declared order; event i has id first + i and time t0 + dt_i.

Event ids are the client's send sequence: each must exceed the previous one (an id is
optional: the server then takes the previous one + 1). Events at or below the highest id
accepted are duplicates (e.g. resent after a resume) and are skipped. Timestamps may arrive
out of order; the session's late policy decides.

Server -> client: "opened" (session id, resume token, highest accepted event id), "result"
(one per window), "dropped" (input queue overflow, running total), "stats", "error"
(`fatal` false: the session goes on) and "closed".
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from augury.server.errors import validation_message
from augury.stream.features import DEFAULT_BANDS, FEATURES

BINARY_HEADER = struct.Struct("<Qd")
MAX_CHANNELS = 64
MAX_BATCH = 10_000


class FrameError(ValueError):
    """A bad frame: `code` names the kind of problem, the message the offending value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class WindowSpec(_Frame):
    kind: Literal["count", "time"] = "count"
    size: float = Field(default=64, gt=0, le=1_000_000)
    """Events (count) or seconds (time) per window."""
    stride: float = Field(default=32, gt=0, le=1_000_000)
    """Events or seconds between window starts (< size overlaps, = size tumbles)."""


class ModelOptionsIn(_Frame):
    threshold_k: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.02, gt=0, le=1)
    warmup: int = Field(default=30, ge=2, le=100_000)
    n_hidden: int = Field(default=64, ge=1, le=1024)
    forgetting: float = Field(default=0.995, gt=0, le=1)
    ridge: float = Field(default=1.0, gt=0)
    seed: int = 0
    classes: list[float] | None = None


class SessionOptions(_Frame):
    late_policy: Literal["reorder", "drop"] = "drop"
    """reorder: hold events up to `reorder_bound` seconds to restore time order; drop: drop
    every event older than the newest one seen."""
    reorder_bound: float = Field(default=0.0, ge=0, le=3600)
    queue_size: int = Field(default=1024, ge=1, le=65_536)
    """Events the input queue holds before the overflow policy applies."""
    overflow: Literal["block", "drop_oldest"] = "block"
    """block: stop reading the socket until the queue has room; drop_oldest: discard the
    oldest queued events and report the running count in "dropped" frames."""
    features: list[str] = Field(default_factory=lambda: list(FEATURES), min_length=1)
    n_bands: int = Field(default=DEFAULT_BANDS, ge=1, le=64)
    include_ids: bool = True
    """Whether results list every event id of their window (else only the first and last)."""
    model: ModelOptionsIn = Field(default_factory=lambda: ModelOptionsIn())


class OpenFrame(_Frame):
    type: Literal["open"]
    model: str = Field(min_length=1, max_length=128)
    channels: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_CHANNELS
    )
    window: WindowSpec | None = None
    """None: the server's default window."""
    options: SessionOptions = Field(default_factory=lambda: SessionOptions())


class ResumeFrame(_Frame):
    type: Literal["resume"]
    session_id: str = Field(min_length=1, max_length=64)
    resume_token: str = Field(min_length=1, max_length=128)
    last_result_seq: int = -1
    """The last result the client has; later ones are sent again."""


class EventIn(_Frame):
    id: int | None = Field(default=None, ge=0, lt=2**63)
    t: float
    values: dict[str, float]
    label: float | None = None


class EventFrame(EventIn):
    type: Literal["event"]


class BatchFrame(_Frame):
    type: Literal["batch"]
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class StatsFrame(_Frame):
    type: Literal["stats"]


class CloseFrame(_Frame):
    type: Literal["close"]


ClientFrame = OpenFrame | ResumeFrame | EventFrame | BatchFrame | StatsFrame | CloseFrame
_CLIENT = TypeAdapter[ClientFrame](Annotated[ClientFrame, Field(discriminator="type")])
_TYPES = ("open", "resume", "event", "batch", "stats", "close")


def parse_text(text: str | bytes) -> ClientFrame:
    """One JSON frame, or FrameError naming the problem (field, value, what is allowed)."""
    try:
        return _CLIENT.validate_json(text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        kind = str(errors[0].get("type", "")) if errors else ""
        if kind == "json_invalid":
            return _raise("invalid_json", validation_message(errors)[0])
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            return _raise("invalid_frame", f"'type' must be one of {', '.join(_TYPES)}")
        for err in errors:  # drop the union tag from locations: ('event', 'values', 'x')
            loc = tuple(err.get("loc", ()))
            err["loc"] = loc[1:] if loc and loc[0] in _TYPES else loc
        code = {"extra_forbidden": "unknown_field", "finite_number": "non_finite"}.get(
            kind, "invalid_frame"
        )
        return _raise(code, validation_message(errors)[0])


def _raise(code: str, message: str) -> Any:
    raise FrameError(code, message)


def parse_binary(data: bytes, n_channels: int) -> tuple[int, float, np.ndarray[Any, Any]]:
    """(first id, t0, rows (n, 1 + c) float32) of a binary frame, or FrameError."""
    row_bytes = 4 * (1 + n_channels)
    body = len(data) - BINARY_HEADER.size
    if body <= 0 or body % row_bytes:
        raise FrameError(
            "wrong_length",
            f"binary frame of {len(data)} bytes: expected a {BINARY_HEADER.size}-byte header "
            f"and rows of {row_bytes} bytes (float32 dt + {n_channels} channel values)",
        )
    first, t0 = BINARY_HEADER.unpack_from(data)
    rows = np.frombuffer(data, dtype="<f4", offset=BINARY_HEADER.size).reshape(-1, 1 + n_channels)
    if not np.isfinite(t0) or not np.all(np.isfinite(rows)):
        bad = int(np.argwhere(~np.isfinite(rows))[0][0]) if np.isfinite(t0) else -1
        where = "t0" if bad < 0 else f"row {bad}"
        raise FrameError("non_finite", f"binary frame has NaN or infinity at {where}")
    if first >= 2**63:
        raise FrameError("invalid_frame", f"binary frame's first id {first} must be < 2**63")
    return int(first), float(t0), rows


def encode_binary(first_id: int, t0: float, rows: np.ndarray[Any, Any]) -> bytes:
    """A binary frame for rows (n, 1 + c) of (dt, values...) (the client's side)."""
    return BINARY_HEADER.pack(first_id, t0) + np.ascontiguousarray(rows, dtype="<f4").tobytes()
