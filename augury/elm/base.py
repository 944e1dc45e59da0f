"""What every ELM estimator shares: the config, the fitted state and the serving path.

An estimator is a hidden layer (fixed, random or rbf), output weights (beta, intercept) and a
`FastPredictor` frozen from them. Subclasses decide how targets are encoded and how beta is
solved; prediction, persistence and ONNX export only ever see `hidden_`, `beta_`, `intercept_`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from augury.elm.activations import ACTIVATIONS
from augury.elm.hidden import INITS, HiddenLayer, Standardizer, build_layer
from augury.elm.predictor import FastPredictor, freeze
from augury.elm.ridge import SOLVERS, GramStats

F64 = NDArray[np.float64]
DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class ELMConfig:
    """Hyperparameters of an ELM. Every field has a working default."""

    n_hidden: int = 512
    """Hidden units L."""
    activation: str = "tanh"
    """sigmoid, tanh, relu, leaky_relu, gelu, sine or rbf."""
    init: str = "xavier"
    """uniform (Huang's U(-1, 1)), xavier or he; ignored by rbf units, which sit on data rows."""
    alpha: float = 1.0
    """Ridge penalty lambda on the output weights (> 0). Larger is smoother."""
    seed: int = 0
    """Seed of the random hidden layer; same seed and data give the same model."""
    solver: str = "auto"
    """primal (Cholesky of H^T H + lambda I), dual (of H H^T + lambda I) or auto (smaller)."""
    gamma: float | None = None
    """rbf width; None uses 1 / n_features on standardized inputs."""
    calibration_fraction: float = 0.1
    """Classifiers: share of rows held out to fit the softmax temperature (0 fits in-sample)."""
    class_weight: str | None = None
    """Classifiers: None or "balanced" (weights inversely proportional to class frequency)."""
    inference_dtype: str = "float32"
    """dtype of the serving path: float32 (fast) or float64."""

    def __post_init__(self) -> None:
        if self.n_hidden < 1:
            raise ValueError(f"n_hidden must be >= 1, got {self.n_hidden}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}; 1e-3 to 10 is typical")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        if self.gamma is not None and not self.gamma > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}; try 1 / n_features")
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise ValueError(
                f"calibration_fraction must be in [0, 1), got {self.calibration_fraction}"
            )
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")
        if self.inference_dtype not in DTYPES:
            raise ValueError(
                f"inference_dtype must be float32 or float64, got {self.inference_dtype!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ELMConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def check_features(X: Any, n_features: int | None = None) -> F64:
    """Training inputs as a finite float64 (n, d) matrix; ValueError naming the problem."""
    try:
        A = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"features must be numeric: {exc}") from None
    if A.ndim != 2:
        raise ValueError(f"features must be a 2-D (rows, columns) array, got shape {A.shape}")
    if A.shape[0] == 0:
        raise ValueError("no rows to train on")
    if n_features is not None and A.shape[1] != n_features:
        raise ValueError(f"expected {n_features} feature columns, got {A.shape[1]}")
    if not np.all(np.isfinite(A)):
        cols = np.flatnonzero(~np.all(np.isfinite(A), axis=0))[:5].tolist()
        raise ValueError(f"feature columns {cols} contain NaN or infinity; impute or drop them")
    return A


class NotFittedError(ValueError):
    """Prediction was asked of an estimator that has not been fitted."""


class ELMBase:
    """Shared state and serving path; subclasses provide target handling and `fit`."""

    task: ClassVar[str] = ""
    kind: ClassVar[str] = "elm"

    def __init__(
        self, config: ELMConfig | None = None, hidden: HiddenLayer | None = None, **overrides: Any
    ) -> None:
        if hidden is not None:
            overrides = {**overrides, "n_hidden": hidden.n_hidden, "activation": hidden.activation}
        self.config = replace(config or ELMConfig(), **overrides)
        self.fixed_hidden = hidden
        """A given hidden layer that fit() uses instead of drawing one (pruning, sharing)."""
        self.hidden_: HiddenLayer | None = hidden
        self.beta_: F64 | None = None
        self.intercept_: F64 | None = None
        self.stats_: GramStats | None = None
        self.feature_names_: list[str] | None = None
        """Input column names, in order (set by the CLI or by loading; optional)."""
        self.target_: str | list[str] | None = None
        """Target column name(s) the model was trained on (optional)."""
        self._predictor: FastPredictor | None = None

    # -- fitted state -------------------------------------------------------------------------

    @property
    def n_features_in_(self) -> int:
        return self._hidden().n_features

    def _hidden(self) -> HiddenLayer:
        if self.hidden_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        return self.hidden_

    @property
    def predictor(self) -> FastPredictor:
        """The frozen serving path (built once per fit)."""
        if self._predictor is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        return self._predictor

    def set_output(self, beta: F64, intercept: F64) -> None:
        """Install output weights (L, k), (k,) and rebuild the serving path."""
        hidden = self._hidden()
        if beta.shape[0] != hidden.n_hidden:
            raise ValueError(f"beta has {beta.shape[0]} rows for {hidden.n_hidden} hidden units")
        self.beta_, self.intercept_ = beta, intercept
        dtype = DTYPES[self.config.inference_dtype]
        self._predictor = FastPredictor(freeze(hidden, beta, intercept, dtype))

    def initialize(self, X: Any, standardizer: Standardizer | None = None) -> HiddenLayer:
        """Draw the hidden layer for data like X (standardization from X unless given), or
        install the fixed layer given at construction."""
        A = check_features(X)
        self.stats_ = None
        if self.fixed_hidden is not None:
            if self.fixed_hidden.n_features != A.shape[1]:
                raise ValueError(
                    f"the given hidden layer takes {self.fixed_hidden.n_features} features, "
                    f"the data has {A.shape[1]}"
                )
            self.hidden_ = self.fixed_hidden
            return self.hidden_
        scaler = standardizer or Standardizer.fit(A)
        if scaler.mean.shape[0] != A.shape[1]:
            raise ValueError(
                f"standardizer has {scaler.mean.shape[0]} features, data has {A.shape[1]}"
            )
        c = self.config
        self.hidden_ = build_layer(A, c.n_hidden, c.activation, c.init, c.seed, c.gamma, scaler)
        return self.hidden_

    # -- map-reduce ---------------------------------------------------------------------------

    def fit_stats(self, stats: GramStats) -> None:
        """Solve the output weights from accumulated statistics (the reduce step)."""
        self.stats_ = stats
        beta, intercept = stats.solve(self.config.alpha)
        self.set_output(beta, intercept)

    def _add_stats(self, stats: GramStats) -> None:
        self.fit_stats(stats if self.stats_ is None else self.stats_ + stats)

    def _check_same_layer(self, other: ELMBase) -> None:
        a, b = self._hidden(), other._hidden()
        same = (
            a.activation == b.activation
            and a.gamma == b.gamma
            and all(
                np.array_equal(getattr(a, f), getattr(b, f))
                for f in ("mean", "scale", "weight", "bias")
            )
        )
        if not same:
            raise ValueError(
                "cannot merge models with different hidden layers; initialize every shard "
                "from the same seed, config and standardizer"
            )

    def _merged_stats(self, others: tuple[ELMBase, ...]) -> GramStats:
        total = self.stats_
        for other in others:
            self._check_same_layer(other)
            if other.stats_ is None:
                raise ValueError("a shard has no statistics: call partial_fit on it first")
            total = other.stats_ if total is None else total + other.stats_
        if total is None:
            raise ValueError("nothing to merge: no shard has statistics")
        return total

    # -- prediction ---------------------------------------------------------------------------

    def scores64(self, H: F64) -> F64:
        """Output scores (n, k) in float64 from hidden features H (n, L) (training path)."""
        if self.beta_ is None or self.intercept_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        return H @ self.beta_ + self.intercept_

    def decision_function(self, X: Any) -> NDArray[Any]:
        """Raw output scores (n, k) in the serving dtype."""
        return self.predictor.scores(X)

    @property
    def n_parameters(self) -> int:
        """Stored numbers needed to serve the model (standardization, both layers)."""
        h = self._hidden()
        beta = self.beta_ if self.beta_ is not None else np.empty((0, 0))
        return int(2 * h.n_features + h.weight.size + h.bias.size + beta.size + beta.shape[1])
