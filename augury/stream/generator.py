"""Synthetic vibration signals with injected faults, and how well a detector finds them.

    .venv/bin/python -m augury.stream.generator --out vibration.csv      # write the CSV
    .venv/bin/python -m augury.stream.generator --evaluate               # delay / false alarms

The signal imitates two accelerometer axes (x, y, 90 degrees apart) on a rotating machine
sampled at `rate` Hz: the shaft frequency (1x) and its second harmonic, a slow drift of the
shaft speed (+-3 %), and Gaussian sensor noise. Faults are injected at known, seeded times:

    imbalance   the 1x amplitude grows by a factor of 2.5
    bearing     a high-frequency resonance (0.35 * rate) in bursts at the defect rate (7.3x),
                like the impacts of a damaged race
    looseness   broadband noise doubles and harmonics 3x..5x appear

The CSV has columns t, x, y, fault (0 normal, 1 inside a fault), ready for
`augury stream --replay`. `evaluate` runs a stream model in-process over the signal (the same
pipeline a server session runs) and reports the detection delay of every fault (from the
fault's start to the end of the first window flagged) and the false-alarm rate (flagged
windows that overlap no fault, over all such windows after warm-up).
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from augury.stream.registry import ModelOptions, ModelRegistry
from augury.stream.session import SessionCore, SessionSpec
from augury.stream.windows import F64, Event

FAULT_KINDS = ("imbalance", "bearing", "looseness")


@dataclass(frozen=True)
class Fault:
    kind: str
    start: float
    end: float


@dataclass
class Signal:
    t: F64
    """(n,) seconds."""
    values: F64
    """(n, 2) x and y."""
    faults: list[Fault] = field(default_factory=list)

    def in_fault(self, a: float, b: float) -> bool:
        """Whether [a, b] overlaps a fault."""
        return any(a <= f.end and b >= f.start for f in self.faults)


def generate(
    seconds: float = 600.0,
    rate: float = 200.0,
    n_faults: int = 6,
    fault_seconds: float = 20.0,
    shaft_hz: float = 12.0,
    noise: float = 0.15,
    seed: int = 0,
) -> Signal:
    """A signal of `seconds` at `rate` Hz with `n_faults` faults of `fault_seconds` each, spread
    over the last 80 % (the first 20 % is clean, for warm-up)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate  # (n,)
    speed = shaft_hz * (1 + 0.03 * np.sin(2 * np.pi * t / 97.0))  # slow speed drift
    phase = 2 * np.pi * np.cumsum(speed) / rate  # (n,) shaft angle
    amp1 = np.ones(n)
    extra = np.zeros((n, 2))
    noise_scale = np.full(n, noise)
    slots = np.linspace(0.2 * seconds, seconds - fault_seconds, n_faults + 1)[:-1]
    faults: list[Fault] = []
    for i, slot in enumerate(slots):
        start = float(slot + rng.uniform(0, 0.5) * (slots[1] - slots[0] - fault_seconds))
        kind = FAULT_KINDS[i % len(FAULT_KINDS)]
        faults.append(Fault(kind, start, start + fault_seconds))
        inside = (t >= start) & (t < start + fault_seconds)
        if kind == "imbalance":
            amp1[inside] = 2.5
        elif kind == "bearing":
            bursts = np.sin(phase[inside] * 7.3) > 0.8  # impacts at the defect rate
            ring = np.sin(2 * np.pi * 0.35 * rate * t[inside])
            extra[inside, 0] += 0.8 * bursts * ring
            extra[inside, 1] += 0.5 * bursts * ring
        else:
            noise_scale[inside] = 2 * noise
            for h in (3, 4, 5):
                extra[inside, 0] += 0.25 * np.sin(h * phase[inside])
                extra[inside, 1] += 0.25 * np.cos(h * phase[inside])
    x = amp1 * np.sin(phase) + 0.3 * np.sin(2 * phase)
    y = amp1 * np.cos(phase) + 0.3 * np.cos(2 * phase)
    values = np.stack([x, y], axis=1) + extra  # (n, 2)
    values += noise_scale[:, None] * rng.standard_normal((n, 2))
    return Signal(t, values, faults)


def write_csv(signal: Signal, path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["t", "x", "y", "fault"])
        for i in range(signal.t.shape[0]):
            a = float(signal.t[i])
            x, y = signal.values[i]
            out.writerow([f"{a:.4f}", f"{x:.5f}", f"{y:.5f}", int(signal.in_fault(a, a))])


@dataclass
class DetectionReport:
    model: str
    delays_s: list[float | None]
    """Per fault: seconds from its start to the end of the first flagged window (None: missed)."""
    false_alarms: int
    normal_windows: int
    seconds: float

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / max(self.normal_windows, 1)

    def summary(self) -> dict[str, object]:
        found = [d for d in self.delays_s if d is not None]
        return {
            "model": self.model,
            "faults": len(self.delays_s),
            "detected": len(found),
            "delay_s_mean": float(np.mean(found)) if found else None,
            "delay_s_max": max(found) if found else None,
            "delays_s": self.delays_s,
            "false_alarm_rate": self.false_alarm_rate,
            "false_alarms_per_hour": self.false_alarms * 3600.0 / self.seconds,
            "normal_windows": self.normal_windows,
        }


def evaluate(
    signal: Signal,
    model: str = "zscore",
    size: int = 64,
    stride: int = 32,
    options: ModelOptions | None = None,
) -> DetectionReport:
    """Run `model` over the signal in count windows of `size`/`stride`; see the module doc."""
    options = options or ModelOptions()
    spec = SessionSpec(
        model=model,
        channels=("x", "y"),
        window_kind="count",
        window_size=size,
        window_stride=stride,
        late_policy="drop",
        reorder_bound=0.0,
        queue_size=1,
        overflow="block",
        features=("std", "rms", "max", "min", "bands"),
        n_bands=8,
        include_ids=False,
        model_options={},
    )
    core = SessionCore(spec, ModelRegistry().create(model, spec.n_features, options), 0)
    events = [Event(i, float(signal.t[i]), signal.values[i]) for i in range(signal.t.shape[0])]
    first_flag: dict[int, float] = {}
    false_alarms = normal = 0
    for text in core.process(events):
        result = json.loads(text)
        if result.get("anomaly") is None:  # still warming up
            continue
        a, b = result["window"]["first_t"], result["window"]["last_t"]
        hit = [i for i, f in enumerate(signal.faults) if a <= f.end and b >= f.start]
        if not hit:
            normal += 1
            false_alarms += int(result["anomaly"])
        elif result["anomaly"]:
            for i in hit:
                first_flag.setdefault(i, b)
    delays = [
        (first_flag[i] - f.start) if i in first_flag else None for i, f in enumerate(signal.faults)
    ]
    return DetectionReport(model, delays, false_alarms, normal, float(signal.t[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the signal as CSV here")
    parser.add_argument("--evaluate", action="store_true", help="report delay and false alarms")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    signal = generate(seconds=args.seconds, rate=args.rate, seed=args.seed)
    if args.out is not None:
        write_csv(signal, args.out)
        print(f"wrote {signal.t.shape[0]} rows with {len(signal.faults)} faults to {args.out}")
    if args.evaluate:
        for model in ("zscore", "elm-autoencoder"):
            print(json.dumps(evaluate(signal, model).summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
