"""Which model a stream session runs: built-in detectors, or ELM folders of a model repository.

Built-in names (hyperparameters come from the session's `ModelOptions`):

    zscore            ZScoreDetector
    elm-autoencoder   ELMAutoencoder with a hidden layer shared by every session of the same
                      width, feature count and seed
    oselm             OnlineELM from zero weights, learning from labelled windows

Any other name is looked up as `models_dir/NAME` (a folder written by `augury.elm.save_model`,
latest version): the session adapts that trained ELM online from its labelled windows, starting
at the trained weights. Its feature count must match the session's feature vector.

A model folder may declare the window its sessions get when their "open" frame names none,
in an optional table of its model.toml (else the server's default window applies):

    [stream]
    window = { kind = "count", size = 64, stride = 32 }   # or kind = "time", in seconds

(augury/predict's ModelRepository serves stateless batched requests; stream sessions need a
per-session model state, so they resolve models here.)
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from augury.stream.models import (
    ELMAutoencoder,
    OnlineELM,
    StreamModel,
    WarmupScaler,
    ZScoreDetector,
)

if TYPE_CHECKING:  # ELM models import augury.elm (and scipy, ~50 MB) when a session asks
    from augury.elm.heads import ClassifierHead, RegressorHead
    from augury.elm.hidden import HiddenLayer

BUILTIN = ("zscore", "elm-autoencoder", "oselm")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ModelNotFound(ValueError):
    """No built-in model and no model folder has that name."""


@dataclass(frozen=True)
class ModelOptions:
    """Per-session hyperparameters (every field has a default)."""

    threshold_k: float = 4.0
    """Detectors: anomaly when the score exceeds mean + k std of recent normal scores."""
    alpha: float = 0.02
    """Detectors: weight of the newest window in the running averages."""
    warmup: int = 30
    """Windows collected before scoring (feature scales, threshold)."""
    n_hidden: int = 64
    """ELM hidden units (built-in ELMs)."""
    forgetting: float = 0.995
    """OS-ELM forgetting factor in (0, 1]; 1 never forgets."""
    ridge: float = 1.0
    """OS-ELM ridge penalty λ (> 0)."""
    seed: int = 0
    """Seed of a built-in ELM's hidden layer."""
    classes: tuple[float, ...] | None = None
    """oselm: classify over these labels instead of regressing."""

    def __post_init__(self) -> None:
        if not self.threshold_k > 0:
            raise ValueError(f"threshold_k must be > 0, got {self.threshold_k}; 3 to 5 is usual")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if not 2 <= self.warmup <= 100_000:
            raise ValueError(f"warmup must be in [2, 100000] windows, got {self.warmup}")
        if not 1 <= self.n_hidden <= 1024:
            raise ValueError(f"n_hidden must be in [1, 1024], got {self.n_hidden}")
        if not 0 < self.forgetting <= 1:
            raise ValueError(f"forgetting must be in (0, 1], got {self.forgetting}")
        if not self.ridge > 0:
            raise ValueError(f"ridge must be > 0, got {self.ridge}")


class ModelRegistry:
    """Resolves model names to per-session models; caches shared hidden layers and loaded
    ELM folders (read-only, so sessions can share them)."""

    def __init__(self, models_dir: str | Path | None = None) -> None:
        self.models_dir = None if models_dir is None else Path(models_dir)
        self._layers: dict[tuple[int, int, int], HiddenLayer] = {}
        self._trained: dict[str, ClassifierHead | RegressorHead] = {}

    def names(self) -> list[str]:
        found = list(BUILTIN)
        if self.models_dir is not None and self.models_dir.is_dir():
            found += sorted(
                p.name for p in self.models_dir.iterdir() if (p / "model.toml").is_file()
            )
        return found

    def shared_layer(self, n_features: int, n_hidden: int, seed: int) -> HiddenLayer:
        """tanh units over standardized inputs, the same for every session asking alike."""
        from augury.elm.hidden import Standardizer, random_layer

        key = (n_features, n_hidden, seed)
        if key not in self._layers:
            identity = Standardizer(1.0, np.zeros(n_features), np.ones(n_features))
            self._layers[key] = random_layer(n_hidden, "tanh", "xavier", seed, identity)
        return self._layers[key]

    def create(self, name: str, n_features: int, options: ModelOptions) -> StreamModel:
        """A fresh model for one session; ModelNotFound or ValueError (naming the problem)."""
        o = options
        if name == "zscore":
            return ZScoreDetector(o.threshold_k, o.alpha, o.warmup)
        if name in ("elm-autoencoder", "oselm"):
            layer = self.shared_layer(n_features, o.n_hidden, o.seed)
            if name == "elm-autoencoder":
                return ELMAutoencoder(
                    layer, o.threshold_k, o.alpha, o.warmup, o.forgetting, o.ridge
                )
            classes = None if o.classes is None else list(o.classes)
            scaler = WarmupScaler(o.warmup)
            return OnlineELM(layer, classes, o.warmup, o.forgetting, o.ridge, scaler)
        trained = self._load(name)
        if trained.n_features_in_ != n_features:
            raise ValueError(
                f"model {name!r} takes {trained.n_features_in_} features but the session's "
                f"windows give {n_features}; match the channels and features it was trained on"
            )
        assert trained.hidden_ is not None and trained.beta_ is not None
        assert trained.intercept_ is not None
        from augury.elm.heads import ClassifierHead

        classes = None
        if isinstance(trained, ClassifierHead):
            classes = [float(c) for c in trained.classes_]
        return OnlineELM.from_trained(
            trained.hidden_, trained.beta_, trained.intercept_, classes, o.forgetting, o.ridge
        )

    def default_window(self, name: str) -> tuple[str, float, float] | None:
        """The window a model folder declares (see the module docstring), or None: built-in
        models, unknown names and folders that declare none. ValueError for a bad one."""
        folder = self._folder(name)
        if folder is None:
            return None
        with (folder / "model.toml").open("rb") as f:
            stream = tomllib.load(f).get("stream", {})
        window = stream.get("window") if isinstance(stream, dict) else None
        return None if window is None else _check_window(name, window)

    def _folder(self, name: str) -> Path | None:
        if name in BUILTIN or self.models_dir is None or not _NAME.fullmatch(name):
            return None
        folder = self.models_dir / name
        return folder if (folder / "model.toml").is_file() else None

    def _load(self, name: str) -> ClassifierHead | RegressorHead:
        if name in self._trained:
            return self._trained[name]
        folder = self._folder(name)
        if folder is None:
            raise ModelNotFound(f"no stream model {name!r}; available: {', '.join(self.names())}")
        from augury.elm.io import load_model

        model = load_model(folder)
        self._trained[name] = model
        return model


def _check_window(name: str, window: object) -> tuple[str, float, float]:
    """(kind, size, stride) of a model.toml [stream] window, or ValueError naming the fix."""
    fix = (
        f"model {name!r} declares a bad default window {window!r} in model.toml; write "
        '[stream] window = {kind = "count" or "time", size = N > 0, stride = N > 0}'
    )
    if not isinstance(window, dict) or set(window) - {"kind", "size", "stride"}:
        raise ValueError(fix)
    kind, numbers = window.get("kind", "count"), (window.get("size"), window.get("stride"))
    sizes = [
        float(v)
        for v in numbers
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    ]
    if kind not in ("count", "time") or len(sizes) != 2:
        raise ValueError(fix)
    if kind == "count" and not all(v.is_integer() for v in sizes):
        raise ValueError(f"{fix} (count windows need whole numbers of events)")
    return str(kind), sizes[0], sizes[1]
