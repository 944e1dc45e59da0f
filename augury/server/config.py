"""Typed settings of the HTTP server: transport, auth, limits. Only the app factory sees all."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from augury.llm.engine import EngineConfig
from augury.stream.config import StreamConfig

API_KEYS_ENV = "AUGURY_API_KEYS"
"""Environment variable with comma-separated API keys."""


@dataclass
class RequestLimits:
    """Caps that keep one request from taking the server down. None means "no cap"."""

    max_body_bytes: int = 2 << 20
    """Largest request body; file uploads (/v1/files) have max_upload_bytes instead."""
    max_upload_bytes: int = 256 << 20
    """Largest request body; larger ones get 413."""
    max_prompt_tokens: int | None = None
    """Most prompt tokens; None means the model's context length."""
    max_tokens: int | None = None
    """Most tokens a request may ask to generate; None means up to the context length."""
    max_n: int = 8
    """Most samples per prompt (`n`)."""
    max_top_logprobs: int = 20
    """Most alternatives per token (`top_logprobs`, `logprobs`)."""
    max_stop: int = 4
    """Most stop strings."""
    max_stop_length: int = 128
    """Longest stop string, in characters."""
    max_messages: int = 256
    """Most chat messages in one request."""
    max_prompts: int = 16
    """Most prompts in one completions request (a batch of prompts)."""
    max_logit_bias: int = 300
    """Most entries of `logit_bias`."""

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_n", "max_stop", "max_messages", "max_prompts"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.max_top_logprobs <= 20:
            raise ValueError(f"max_top_logprobs must be in [0, 20], got {self.max_top_logprobs}")


@dataclass
class RateLimits:
    """Per-API-key budgets, refilled continuously. None turns a budget off."""

    requests_per_minute: int | None = None
    """Requests each key may start per minute."""
    tokens_per_minute: int | None = None
    """Prompt + generated tokens each key may use per minute."""

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or unset), got {value}")


@dataclass
class ServerConfig:
    """Everything `create_app` and `augury serve` need."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    """The model to load at startup (ignored when the app is given engines)."""
    host: str = "127.0.0.1"
    """Interface to bind; the loopback default keeps the server private."""
    port: int = 8000
    api_keys: Mapping[str, str] = field(default_factory=dict)
    """name -> key. Empty turns auth off; otherwise every route but /health needs a key."""
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    cors_origins: tuple[str, ...] = ()
    """Origins allowed by CORS; empty means no CORS headers at all."""
    request_timeout: float = 600.0
    """Seconds a generation may take before it is stopped and its cache freed."""
    grace_period: float = 30.0
    """Seconds in-flight requests get to finish after SIGTERM."""
    streams: StreamConfig = field(default_factory=StreamConfig)
    """Limits and defaults of streaming sessions on /v1/streams."""
    batch_dir: str | None = "data/batch"
    """Where the OpenAI Batch API keeps its SQLite store and files; None disables it."""
    model_repository: str | None = "models"
    """Folder of predictive models served on /v2 (KServe) and /v1/embeddings; None, or a
    folder that does not exist, serves none."""
    repository_poll_interval: float = 5.0
    """Seconds between scans of the model repository for new versions."""
    limits: RequestLimits = field(default_factory=RequestLimits)
    rate_limits: RateLimits = field(default_factory=RateLimits)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in [1, 65535], got {self.port}")
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, got {self.request_timeout}")
        if self.grace_period < 0:
            raise ValueError(f"grace_period must be >= 0, got {self.grace_period}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("TLS needs both ssl_certfile and ssl_keyfile")


def key_name(key: str) -> str:
    """A label for a key that is safe to log: a short hash, never the key."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def collect_api_keys(
    keys: Iterable[str] = (),
    keys_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """name -> key from `--api-key` values, a keys file and the AUGURY_API_KEYS variable.

    A keys file has one key per line, optionally preceded by a name (`alice sk-...`); blank lines
    and lines starting with '#' are skipped.
    """
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    plain = [*keys, *(k for k in env.get(API_KEYS_ENV, "").split(",") if k.strip())]
    for key in plain:
        _add_key(found, key_name(key.strip()), key.strip())
    if keys_file is not None:
        for lineno, line in enumerate(Path(keys_file).read_text().splitlines(), 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) > 2:
                raise ValueError(f"{keys_file}:{lineno}: expected 'KEY' or 'NAME KEY'")
            key = parts[-1]
            _add_key(found, parts[0] if len(parts) == 2 else key_name(key), key)
    return found


def _add_key(found: dict[str, str], name: str, key: str) -> None:
    if len(key) < 8:
        raise ValueError(f"API key {name!r} is {len(key)} characters; use at least 8")
    found[name] = key
