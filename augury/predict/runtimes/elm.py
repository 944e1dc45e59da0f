"""The ELM runtime: a model saved by `augury.elm.save_model` (safetensors + JSON).

Classifiers answer "probabilities" (n, k) (the softmax over the fitted temperature);
regressors answer "prediction" (n, k).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from augury.elm.heads import ClassifierHead
from augury.elm.io import load_model
from augury.predict.config import ModelConfig
from augury.predict.errors import ConfigError


class ELMRuntime:
    """Wraps a loaded ELM estimator."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.classifier = isinstance(model, ClassifierHead)

    def run(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        if len(inputs) != 1:
            raise ValueError(f"an ELM takes one input matrix, got {list(inputs)}")
        (X,) = inputs.values()
        if self.classifier:
            return {"probabilities": self.model.predict_proba(X).astype(np.float32, copy=False)}
        pred = np.asarray(self.model.predict(X), dtype=np.float32)
        return {"prediction": pred.reshape(pred.shape[0], -1)}  # (n, k)


def load(config: ModelConfig, folder: Path) -> ELMRuntime:
    try:
        return ELMRuntime(load_model(folder))
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{folder} does not hold a loadable ELM: {exc}") from None
