"""Extreme learning machines: a random, fixed hidden layer; output weights in closed form.

    from augury.elm import ELMClassifier, save_model
    model = ELMClassifier(n_hidden=512, activation="tanh", alpha=1.0).fit(X, y)
    model.predict(X[:1].astype("float32"))      # single-row fast path
    save_model(model, "models/NAME")            # models/NAME/model.toml + models/NAME/1/

Modules: model (ELM), kernel (kernel ELM), online (OS-ELM), selection (cross-validation),
io (safetensors + JSON + model.toml), onnx_export, distill, prune, datasets (fraud data),
tabular (CSV/Parquet checks). Heavier ones (selection, onnx_export, distill) are imported
from their modules so that serving a model loads only numpy and scipy.
"""

from augury.elm.base import ELMConfig, NotFittedError
from augury.elm.hidden import HiddenLayer, Standardizer
from augury.elm.io import load_model, save_model
from augury.elm.kernel import KernelELMClassifier, KernelELMRegressor
from augury.elm.model import ELMClassifier, ELMRegressor
from augury.elm.online import OnlineELMClassifier, OnlineELMRegressor
from augury.elm.ridge import GramStats

__all__ = [
    "ELMClassifier",
    "ELMConfig",
    "ELMRegressor",
    "GramStats",
    "HiddenLayer",
    "KernelELMClassifier",
    "KernelELMRegressor",
    "NotFittedError",
    "OnlineELMClassifier",
    "OnlineELMRegressor",
    "Standardizer",
    "load_model",
    "save_model",
]
