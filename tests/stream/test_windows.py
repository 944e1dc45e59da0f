"""Windows: exact counts and spans against a brute-force reference; reordering; checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from augury.stream.windows import CountWindower, Event, ReorderBuffer, TimeWindower, Window


def stream(n: int, dt: float = 0.125, skip: tuple[float, float] | None = None) -> list[Event]:
    out = [Event(i, i * dt, np.array([float(i)])) for i in range(n)]
    return [e for e in out if skip is None or not skip[0] <= e.t < skip[1]]


def run(windower: CountWindower | TimeWindower, events: list[Event]) -> list[Window]:
    return [w for e in events for w in windower.push(e)]


def reference_count(events: list[Event], size: int, stride: int) -> list[list[int]]:
    return [[e.id for e in events[s : s + size]] for s in range(0, len(events) - size + 1, stride)]


def reference_time(events: list[Event], size: float, stride: float) -> list[list[int]]:
    """Window k = [a0 + k stride, + size), emitted once an event at or past its end exists."""
    a0, last = math.floor(events[0].t / stride) * stride, events[-1].t
    out, k = [], 0
    while a0 + k * stride + size <= last:
        a = a0 + k * stride
        ids = [e.id for e in events if a <= e.t < a + size]
        if ids:
            out.append(ids)
        k += 1
    return out


def test_count_windows_overlapping_exact() -> None:
    windows = run(CountWindower(10, 5), stream(100))
    assert len(windows) == 19
    for k, w in enumerate(windows):
        assert w.index == k and w.ids == list(range(5 * k, 5 * k + 10))
        assert (w.start, w.end) == (5 * k * 0.125, (5 * k + 9) * 0.125)


def test_count_windows_tumbling_exact() -> None:
    windows = run(CountWindower(10, 10), stream(100))
    assert [w.ids for w in windows] == [list(range(10 * k, 10 * k + 10)) for k in range(10)]


@pytest.mark.parametrize(("size", "stride"), [(10, 5), (10, 10), (4, 6), (1, 1), (7, 3), (16, 1)])
def test_count_windows_match_reference(size: int, stride: int) -> None:
    events = stream(103)
    windows = run(CountWindower(size, stride), events)  # all kept until the stream ends
    assert [w.ids for w in windows] == reference_count(events, size, stride)
    for w in windows:  # views into the windower's buffer: still each window's own events
        np.testing.assert_array_equal(w.values[:, 0], w.ids)
        np.testing.assert_array_equal(w.times, [events[i].t for i in w.ids])


def test_time_windows_overlapping_exact() -> None:
    windows = run(TimeWindower(1.0, 0.5), stream(80))  # t = 0 .. 9.875, 8 events per second
    assert len(windows) == 18
    for k, w in enumerate(windows):
        assert (w.start, w.end) == (0.5 * k, 0.5 * k + 1.0)
        assert w.ids == list(range(4 * k, 4 * k + 8))
        assert w.times[0] == 0.5 * k and w.times[-1] == 0.5 * k + 0.875


def test_time_windows_tumbling_exact() -> None:
    windows = run(TimeWindower(1.0, 1.0), stream(80))
    assert [(w.start, w.ids) for w in windows] == [
        (k, list(range(8 * k, 8 * k + 8))) for k in range(9)
    ]


@pytest.mark.parametrize(
    ("size", "stride", "skip"),
    [(1.0, 0.5, None), (1.0, 0.25, (2.0, 4.6)), (0.5, 1.5, None), (2.0, 2.0, (1.0, 7.0))],
)
def test_time_windows_match_reference(
    size: float, stride: float, skip: tuple[float, float] | None
) -> None:
    events = stream(90, skip=skip)
    got = [w.ids for w in run(TimeWindower(size, stride), events)]
    assert got == reference_time(events, size, stride)


def test_window_label_is_latest() -> None:
    events = stream(4)
    events[1].label, events[2].label = 1.0, 0.0
    (window,) = run(CountWindower(4, 4), events)
    assert window.label == 0.0 and window.values.shape == (4, 1)


@pytest.mark.parametrize("windower", [CountWindower(10, 3), TimeWindower(1.0, 0.375)])
def test_windower_checkpoint_continues_exactly(windower: CountWindower | TimeWindower) -> None:
    events = stream(120)
    whole = [w.ids for w in run(windower, events)]
    fresh = type(windower)(windower.size, windower.stride)  # type: ignore[arg-type]
    first = [w.ids for w in run(fresh, events[:53])]
    resumed = type(windower)(windower.size, windower.stride)  # type: ignore[arg-type]
    resumed.load(fresh.state())
    assert first + [w.ids for w in run(resumed, events[53:])] == whole


def test_reorder_within_bound_restores_order() -> None:
    buffer = ReorderBuffer("reorder", bound=0.3)
    times = [0.0, 0.2, 0.1, 0.3, 0.6, 0.5, 0.9, 1.5]
    out = [e.t for i, t in enumerate(times) for e in buffer.push(Event(i, t, np.zeros(1)))]
    out += [e.t for e in buffer.flush()]
    assert out == sorted(times)
    assert (buffer.reordered, buffer.dropped_late) == (2, 0)


def test_reorder_drops_events_beyond_the_bound() -> None:
    buffer = ReorderBuffer("reorder", bound=0.2)
    for i, t in enumerate([0.0, 0.1, 1.0, 0.5, 0.9]):
        buffer.push(Event(i, t, np.zeros(1)))
    assert buffer.dropped_late == 1  # 0.5 came after 0.1..0.8 were released
    assert buffer.reordered == 1  # 0.9 is within 0.2 of 1.0


def test_drop_policy_drops_every_out_of_order_event() -> None:
    buffer = ReorderBuffer("drop", bound=5.0)
    out = [
        e.t
        for i, t in enumerate([0.0, 0.2, 0.1, 0.3])
        for e in buffer.push(Event(i, t, np.zeros(1)))
    ]
    assert out == [0.0, 0.2, 0.3] and buffer.dropped_late == 1


def test_bad_window_parameters_raise() -> None:
    with pytest.raises(ValueError, match="size >= 1"):
        CountWindower(0, 1)
    with pytest.raises(ValueError, match="size > 0"):
        TimeWindower(1.0, 0.0)
    with pytest.raises(ValueError, match="late policy"):
        ReorderBuffer("keep", 0.0)  # type: ignore[arg-type]


def test_count_windows_larger_than_the_first_buffer() -> None:
    """Size 5000 outgrows the first allocation: the buffer grows and keeps every event."""
    events = stream(12_000, dt=0.001)
    windows = run(CountWindower(5000, 700), events)
    assert [w.ids for w in windows] == reference_count(events, 5000, 700)
    assert all(np.array_equal(w.values[:, 0], np.array(w.ids, dtype=float)) for w in windows)


@pytest.mark.parametrize(("size", "stride"), [(4, 4), (4, 2), (3, 5)])
def test_count_window_label_is_latest_labelled_event_inside(size: int, stride: int) -> None:
    events = stream(40)
    for i in (2, 9, 10, 23):
        events[i].label = float(i)
    windower = CountWindower(size, stride)
    for w in run(windower, events):
        inside = [float(i) for i in w.ids if i in (2, 9, 10, 23)]
        assert w.label == (inside[-1] if inside else None), w.ids


def test_count_windower_checkpoint_keeps_a_held_label() -> None:
    events = stream(30)
    events[21].label = 5.0
    whole = [(w.ids, w.label) for w in run(CountWindower(8, 8), events)]
    first = CountWindower(8, 8)
    head = [(w.ids, w.label) for w in run(first, events[:22])]
    resumed = CountWindower(8, 8)
    resumed.load(first.state())
    assert head + [(w.ids, w.label) for w in run(resumed, events[22:])] == whole
    assert whole[-1] == (list(range(16, 24)), 5.0)
