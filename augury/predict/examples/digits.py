"""Handwritten digits (scikit-learn's bundled 8x8 images), served from PNG through the image
preprocessing path: decode, grayscale, scale to the 0..16 range, flatten, ELM.

The test images are encoded as PNG and sent through the same pipeline a client would use.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from augury.elm import ELMClassifier, save_model
from augury.predict.config import load_config
from augury.predict.examples.common import write_metrics, write_toml
from augury.predict.pipeline import InferRequest, Pipeline

NAME = "digits"


def to_png(image: NDArray[np.float64]) -> bytes:
    """An 8x8 digit (values 0..16) as a grayscale PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), mode="L").save(buf, "PNG")
    return buf.getvalue()


def build(out: Path, n_hidden: int = 1024) -> dict[str, Any]:
    start = time.perf_counter()
    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    # Train on what the server will see: pixels after a PNG round trip (0..255 -> 0..16).
    X_fit = np.round(X_train.reshape(len(X_train), -1) * 255 / 16) * 16 / 255
    model = ELMClassifier(n_hidden=n_hidden, activation="tanh", alpha=0.1, seed=0)
    model.fit(X_fit.astype(np.float32), y_train)
    folder = save_model(model, out / NAME, onnx=False)
    spec = {
        "name": NAME,
        "task": "classification",
        "runtime": "elm",
        "description": "Handwritten digits 0-9 from 8x8 grayscale PNG images (scikit-learn digits)",
        "labels": [str(c) for c in range(10)],
        "inputs": [{"name": "image", "dtype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "dtype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "dtype": "FP32", "shape": [-1, 10]},
            {"name": "top_k_labels", "dtype": "BYTES", "shape": [-1, 3]},
            {"name": "top_k_probabilities", "dtype": "FP32", "shape": [-1, 3]},
        ],
        "preprocess": {
            "kind": "image",
            "input": "image",
            "output": "input",
            "mode": "L",
            "size": [8, 8],
            "scale": 16 / 255,
            "layout": "flat",
        },
        "postprocess": {"top_k": 3},
        "batching": {"max_batch_size": 64, "max_queue_delay_ms": 0.0},
    }
    write_toml(out / NAME / "model.toml", spec)
    pipeline = Pipeline.load(load_config(out / NAME), folder)
    images = np.empty(len(X_test), dtype=object)
    images[:] = [to_png(x) for x in X_test]
    result = pipeline.predict(InferRequest({"image": images}))
    predicted = result.outputs["label"].astype(int)
    metrics = {
        "rows_train": len(y_train),
        "rows_test": len(y_test),
        "accuracy": round(float(np.mean(predicted == y_test)), 4),
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    write_metrics(folder, metrics)
    return metrics
