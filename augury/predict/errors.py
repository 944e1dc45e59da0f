"""What can go wrong in prediction, as exception types the server maps to status codes."""

from __future__ import annotations


class PredictError(Exception):
    """Base of prediction errors; the message is safe to show a client."""


class ConfigError(PredictError, ValueError):
    """A model.toml (or a model folder) is invalid; the message names the field."""


class InvalidInput(PredictError, ValueError):
    """A request's tensors do not fit the model (answered 400)."""


class ModelNotFound(PredictError, LookupError):
    """No such model or version in the repository (answered 404)."""


class ModelNotReady(PredictError):
    """The model exists but is not loaded, or is shutting down (answered 503)."""


class QueueFull(PredictError):
    """The model's queue is at its bound (answered 429)."""


class RequestTimeout(PredictError, TimeoutError):
    """The request was not answered within its timeout (answered 504)."""
