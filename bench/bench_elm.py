"""ELM serving and training benchmark: native predictor vs ONNX Runtime vs scikit-learn's MLP.

    .venv/bin/python bench/bench_elm.py [--hidden 512] [--rows 100000] [--threads 1]

On 100k x 30 synthetic binary data (sklearn make_classification) it measures, in one process:
  - training time (ELM closed form; MLPClassifier with the same hidden width, fixed epochs);
  - single-row predict latency p50/p99 (one (1, 30) float32 row per call);
  - batch-of-1024 throughput (rows/s);
  - a breakdown of the ELM single-row path, step by step, to show what dominates.
Prints a table and writes bench/results/bench_elm.json.

BLAS threads default to 1: on small shared machines OpenBLAS threads spin against other
processes and small products get 10-100x slower (see the README section).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from augury.elm import ELMClassifier
from augury.elm.onnx_export import to_onnx

RESULTS = Path(__file__).resolve().parent / "results"


def latency_us(fn: Callable[[Any], Any], rows: np.ndarray, calls: int) -> tuple[float, float]:
    """(p50, p99) microseconds of fn(one row), cycling through `rows` (n, 1, d)."""
    for i in range(min(calls, 500)):  # warm up caches and lazy initialisation
        fn(rows[i % len(rows)])
    times = np.empty(calls)
    clock = time.perf_counter_ns
    for i in range(calls):
        row = rows[i % len(rows)]
        start = clock()
        fn(row)
        times[i] = clock() - start
    return float(np.percentile(times, 50) / 1e3), float(np.percentile(times, 99) / 1e3)


def throughput(fn: Callable[[Any], Any], batch: np.ndarray, seconds: float = 1.0) -> float:
    """Rows per second of fn(batch), best of repeated one-second runs."""
    fn(batch)
    best = np.inf
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        fn(batch)
        best = min(best, time.perf_counter() - start)
    return float(batch.shape[0] / best)


def row_breakdown(model: ELMClassifier, x: np.ndarray) -> dict[str, float]:
    """Microseconds of each step of the single-row path, timed in isolation."""
    p = model.predictor
    f = p.frozen
    z, s = np.empty((1, p.n_hidden), p.dtype), np.empty((1, p.n_outputs), p.dtype)
    flat = x.reshape(-1)
    steps: dict[str, Callable[[], Any]] = {
        "predict (total)": lambda: model.predict(x),
        "predict_proba (total)": lambda: model.predict_proba(x),
        "checks (is_row + finite)": lambda: (p.is_row(x), flat.dot(flat)),
        "x @ W (1 x d x L)": lambda: np.dot(x, f.weight, out=z),
        "+ b": lambda: np.add(z, f.bias, out=z),
        f"{f.activation}": lambda: p._act.forward(z),
        "h @ beta (1 x L x k)": lambda: np.dot(z, f.beta, out=s),
        "+ c": lambda: np.add(s, f.intercept, out=s),
        "argmax + label": lambda: model._classes[int(s.argmax())],
    }
    out = {}
    for name, fn in steps.items():
        n = 20000
        out[name] = min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--mlp-epochs", type=int, default=10)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1, help="BLAS and ONNX Runtime threads")
    args = parser.parse_args()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        results = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "bench_elm.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    X, y = make_classification(
        n_samples=args.rows + 20_000,
        n_features=args.features,
        n_informative=20,
        n_redundant=5,
        n_classes=2,
        class_sep=0.8,
        random_state=0,
    )
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=20_000, random_state=0)
    X_te32 = X_te.astype(np.float32)
    rows = X_te32[:1000].reshape(1000, 1, -1)  # (n, 1, d): ready single-row inputs
    batch = X_te32[:1024]

    start = time.perf_counter()
    elm = ELMClassifier(n_hidden=args.hidden, activation="tanh", alpha=1.0).fit(X_tr, y_tr)
    elm_train = time.perf_counter() - start

    mlp = MLPClassifier(hidden_layer_sizes=(args.hidden,), max_iter=args.mlp_epochs, random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_tr, y_tr)
    mlp_train = time.perf_counter() - start

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = args.threads
    session = ort.InferenceSession(
        to_onnx(elm).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )

    def ort_predict(x: np.ndarray) -> Any:
        return session.run(["label"], {"input": x})[0]

    systems: dict[str, dict[str, Callable[[Any], Any]]] = {
        "augury ELM predict": {"row": elm.predict, "batch": elm.predict},
        "augury ELM predict_proba": {"row": elm.predict_proba, "batch": elm.predict_proba},
        "ONNX Runtime (exported ELM)": {"row": ort_predict, "batch": ort_predict},
        "sklearn MLPClassifier.predict": {"row": mlp.predict, "batch": mlp.predict},
    }
    accuracy = {
        "augury ELM predict": float(np.mean(elm.predict(X_te32) == y_te)),
        "augury ELM predict_proba": float(np.mean(elm.predict(X_te32) == y_te)),
        "ONNX Runtime (exported ELM)": float(np.mean(ort_predict(X_te32) == y_te)),
        "sklearn MLPClassifier.predict": float(np.mean(mlp.predict(X_te) == y_te)),
    }
    train = {"augury ELM predict": elm_train, "sklearn MLPClassifier.predict": mlp_train}
    table = []
    for name, fns in systems.items():
        calls = args.calls if "MLP" not in name else args.calls // 4
        p50, p99 = latency_us(fns["row"], rows, calls)
        table.append(
            {
                "system": name,
                "p50_us": p50,
                "p99_us": p99,
                "batch1024_rows_per_s": throughput(fns["batch"], batch),
                "test_accuracy": accuracy[name],
                "train_s": train.get(name),
            }
        )
    breakdown = row_breakdown(elm, rows[0])
    _print(args, table, breakdown)
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "blas_threads": args.threads,
        },
        "data": {"train_rows": len(X_tr), "features": args.features, "test_rows": len(X_te)},
        "elm": {"hidden": args.hidden, "activation": "tanh", "train_s": elm_train},
        "mlp": {"hidden": args.hidden, "epochs": args.mlp_epochs, "train_s": mlp_train},
        "results": table,
        "elm_row_breakdown_us": breakdown,
    }


def _print(
    args: argparse.Namespace, table: list[dict[str, Any]], breakdown: dict[str, float]
) -> None:
    print(
        f"{args.rows} x {args.features} training rows, {args.hidden} hidden units, "
        f"{args.threads} BLAS thread(s)\n"
    )
    head = (
        f"{'system':<32}{'p50 us':>9}{'p99 us':>9}{'batch rows/s':>15}"
        f"{'accuracy':>10}{'train s':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in table:
        train = f"{r['train_s']:.2f}" if r["train_s"] is not None else ""
        print(
            f"{r['system']:<32}{r['p50_us']:>9.1f}{r['p99_us']:>9.1f}"
            f"{r['batch1024_rows_per_s']:>15,.0f}{r['test_accuracy']:>10.4f}{train:>9}"
        )
    print("\nELM single-row path, each step alone (us):")
    for name, us in breakdown.items():
        print(f"  {name:<28}{us:>7.2f}")


if __name__ == "__main__":
    main()
