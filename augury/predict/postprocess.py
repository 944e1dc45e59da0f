"""Declared output processing, vectorized over the whole batch.

Classification turns scores into "probabilities" (softmax when declared), "label" (argmax, or
for a binary classifier p[:, 1] >= threshold) and, with top_k, "top_k_labels" and
"top_k_probabilities". Regression answers "prediction" (units in the output's parameters);
embedding models answer "embedding" (unit length when `normalize`). Runtime outputs that
share a declared output's name pass through unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from augury.predict.config import ModelConfig


def softmax(scores: NDArray[Any]) -> NDArray[np.float32]:
    """Row-wise softmax; subtracting the row max keeps exp() from overflowing."""
    z = scores.astype(np.float32) - scores.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class Postprocessor:
    """Maps runtime outputs (whole batch) to the model's declared outputs."""

    def __init__(self, config: ModelConfig) -> None:
        self.task = config.task
        self.post = config.postprocess
        self.labels = np.asarray(config.labels, dtype=object) if config.labels else None
        self.scores_name = config.runtime_options.get("scores_output")
        self.parameters: dict[str, dict[str, Any]] = {}
        if config.postprocess.units:
            self.parameters["prediction"] = {"units": config.postprocess.units}

    def __call__(self, raw: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        out = dict(raw)
        main = raw[self.scores_name] if self.scores_name else next(iter(raw.values()))
        if self.task == "classification":
            out.update(self._classify(main))
        elif self.task == "regression":
            pred = np.asarray(main, np.float32)
            out["prediction"] = pred.reshape(pred.shape[0], -1)  # (n, targets)
        else:
            emb = np.asarray(main, np.float32)
            if self.post.normalize:
                emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            out["embedding"] = emb
        return out

    def _classify(self, scores: NDArray[Any]) -> dict[str, NDArray[Any]]:
        scores = np.asarray(scores, np.float32)
        if scores.ndim == 1:  # a single positive-class probability -> two columns
            scores = np.stack([1.0 - scores, scores], axis=1)
        probs = softmax(scores) if self.post.softmax else scores  # (n, k)
        k = probs.shape[1]
        labels = self.labels if self.labels is not None else np.arange(k).astype(str).astype(object)
        if self.post.threshold is not None and k == 2:
            index = (probs[:, 1] >= self.post.threshold).astype(np.intp)
        else:
            index = probs.argmax(axis=1)
        out = {"probabilities": probs, "label": labels[index]}
        if self.post.top_k:
            top = min(self.post.top_k, k)
            order = np.argsort(-probs, axis=1, kind="stable")[:, :top]  # (n, top)
            out["top_k_labels"] = labels[order]
            out["top_k_probabilities"] = np.take_along_axis(probs, order, axis=1)
        return out
