"""What every example build shares: writing model.toml, metrics, and the built-already check."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS = "metrics.json"


def is_built(out: Path, name: str) -> bool:
    """True when `out/name` has a version with metrics (the last step of a build)."""
    return any((out / name).glob(f"*/{METRICS}"))


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    (folder / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")


def read_metrics(out: Path, name: str) -> dict[str, Any]:
    found = sorted((out / name).glob(f"*/{METRICS}"))
    return dict(json.loads(found[-1].read_text())) if found else {}


def write_toml(path: Path, spec: dict[str, Any]) -> None:
    """model.toml from a dict: scalars and lists first, then tables, then arrays of tables."""
    path.write_text(
        "# Augury model repository entry (augury/predict/examples).\n" + _table(spec, "")
    )


def _table(spec: dict[str, Any], prefix: str) -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in spec.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        else:
            lines.append(f"{key} = {_value(value)}\n")
    text = "".join(lines)
    for key, value in tables:
        text += f"\n[{prefix}{key}]\n" + _table(value, f"{prefix}{key}.")
    for key, rows in arrays:
        for row in rows:
            text += f"\n[[{prefix}{key}]]\n" + _table(row, f"{prefix}{key}.")
    return text


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} to model.toml")
