"""`augury serve`: the OpenAI-compatible HTTP server under uvicorn.

SIGTERM (or Ctrl+C) drains: the listening socket closes, /ready and new API calls answer 503,
in-flight requests get `--grace-period` seconds to finish, then the process exits 0.

`--ray` serves the same routes through Ray Serve instead (augury.scale): the LLM and each
predictive model become deployments of `--replicas N` (or `--autoscale MIN,MAX`) replicas on
a local Ray instance or, with `--address`, on an existing cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import uvicorn

from augury.cli.common import add_model_args, engine_config_from_args, parse_bytes
from augury.scale.config import ScaleConfig, parse_autoscale, require_ray
from augury.server.app import create_app, server_state, tune_gc
from augury.server.config import (
    API_KEYS_ENV,
    RateLimits,
    RequestLimits,
    ServerConfig,
    collect_api_keys,
)
from augury.server.logging import configure_logging
from augury.server.websocket import DirectWebSocketProtocol

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve models over an OpenAI-compatible HTTP API"
    )
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    net.add_argument("--port", type=int, default=8000)
    net.add_argument("--ssl-certfile", help="PEM certificate: serve HTTPS")
    net.add_argument("--ssl-keyfile", help="PEM private key of --ssl-certfile")
    net.add_argument(
        "--cors-origin", action="append", default=[], help="allow this origin (repeatable)"
    )
    auth = p.add_argument_group("auth and limits")
    auth.add_argument(
        "--api-key",
        action="append",
        default=[],
        help=f"accepted key (repeatable; also ${API_KEYS_ENV}, comma-separated)",
    )
    auth.add_argument("--api-keys-file", help="file of keys: 'KEY' or 'NAME KEY' per line")
    auth.add_argument("--rate-limit-rpm", type=int, help="requests per minute per key")
    auth.add_argument("--rate-limit-tpm", type=int, help="tokens per minute per key")
    auth.add_argument(
        "--max-body-size", type=parse_bytes, default=2 << 20, help="largest request body (2MiB)"
    )
    auth.add_argument("--max-tokens", type=int, help="most tokens one request may generate")
    auth.add_argument("--max-prompt-tokens", type=int, help="most prompt tokens per request")
    auth.add_argument("--max-n", type=int, default=8, help="most samples per request")
    auth.add_argument("--request-timeout", type=float, default=600.0, help="seconds")
    auth.add_argument("--grace-period", type=float, default=30.0, help="seconds after SIGTERM")
    add_model_args(p)
    eng = p.add_argument_group("engine")
    eng.add_argument("--model-id", help="name clients use in 'model' (default: file name)")
    eng.add_argument("--max-num-seqs", type=int, default=128)
    eng.add_argument("--max-num-batched-tokens", type=int, default=512)
    eng.add_argument("--max-model-len", type=int)
    eng.add_argument("--max-waiting", type=int, default=1024, help="queue bound (then 429)")
    eng.add_argument("--seed", type=int, default=0)
    pred = p.add_argument_group("predictive models")
    pred.add_argument(
        "--model-repository",
        default="models",
        help="folder of predictive models for /v2 and /v1/embeddings (default: models/)",
    )
    pred.add_argument(
        "--no-model-repository", action="store_true", help="serve no predictive models"
    )
    add_ray_args(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def add_ray_args(p: argparse.ArgumentParser) -> None:
    ray = p.add_argument_group("scale out on Ray Serve (needs: pip install 'augury[ray]')")
    ray.add_argument("--ray", action="store_true", help="serve through Ray Serve deployments")
    count = ray.add_mutually_exclusive_group()
    count.add_argument("--replicas", type=int, default=1, help="replicas per model (default 1)")
    count.add_argument(
        "--autoscale", metavar="MIN,MAX", help="autoscale replicas on ongoing requests"
    )
    ray.add_argument(
        "--target-ongoing-requests", type=float, default=4.0, help="autoscaling target (4)"
    )
    ray.add_argument(
        "--address", help="Ray cluster to join (e.g. 10.0.0.1:6379); default: start one here"
    )
    ray.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs per LLM replica (1)")
    ray.add_argument(
        "--replica-gpus", type=float, default=0.0, help="GPUs per LLM replica (0; 1 with CUDA)"
    )
    ray.add_argument(
        "--model-replica-cpus",
        type=float,
        default=0.5,
        help="CPUs per predictive-model replica (0.5)",
    )
    ray.add_argument(
        "--ray-models",
        help="comma-separated predictive models to deploy on Ray (default: all; others run "
        "in the ingress process)",
    )


def scale_from_args(args: argparse.Namespace) -> ScaleConfig:
    """ScaleConfig from the --ray flags (ValueError for bad values)."""
    models = None
    if args.ray_models:
        models = tuple(m.strip() for m in args.ray_models.split(",") if m.strip())
    return ScaleConfig(
        replicas=args.replicas,
        autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
        target_ongoing_requests=args.target_ongoing_requests,
        address=args.address,
        llm_cpus=args.replica_cpus,
        llm_gpus=args.replica_gpus,
        predict_cpus=args.model_replica_cpus,
        models=models,
        max_ongoing_requests=max(1, args.max_num_seqs),
    )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """ServerConfig from parsed arguments and the environment (ValueError for bad values)."""
    engine = engine_config_from_args(
        args,
        model_id=args.model_id,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        max_model_len=args.max_model_len,
        max_waiting=args.max_waiting,
        seed=args.seed,
    )
    return ServerConfig(
        engine=engine,
        host=args.host,
        port=args.port,
        api_keys=collect_api_keys(args.api_key, args.api_keys_file, os.environ),
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        cors_origins=tuple(args.cors_origin),
        request_timeout=args.request_timeout,
        grace_period=args.grace_period,
        limits=RequestLimits(
            max_body_bytes=args.max_body_size,
            max_prompt_tokens=args.max_prompt_tokens,
            max_tokens=args.max_tokens,
            max_n=args.max_n,
        ),
        rate_limits=RateLimits(args.rate_limit_rpm, args.rate_limit_tpm),
        model_repository=None if args.no_model_repository else args.model_repository,
    )


class DrainingServer(uvicorn.Server):
    """uvicorn's server that tells the app to drain on SIGTERM/SIGINT and, once the grace
    period is over, exits normally instead of re-raising the signal."""

    def __init__(self, config: uvicorn.Config, on_exit_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit_signal = on_exit_signal

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit_signal()
        super().handle_exit(sig, frame)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    config = config_from_args(args)
    if not config.api_keys and config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s without API keys: anyone who can reach it can use it", config.host
        )
    if args.ray:
        return run_on_ray(config, scale_from_args(args))
    app = create_app(config)
    state = server_state(app)

    def drain() -> None:
        state.draining = True

    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        ssl_certfile=config.ssl_certfile,
        ssl_keyfile=config.ssl_keyfile,
        timeout_graceful_shutdown=math.ceil(config.grace_period),
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        # Streaming sessions send many small frames: compressing each costs more CPU than the
        # loopback or LAN bytes it saves (measured in bench_stream).
        ws_per_message_deflate=False,
        ws=DirectWebSocketProtocol,  # uvicorn's, plus a direct path for /v1/streams
    )
    server = DrainingServer(uv_config, drain)
    tune_gc()
    server.run()
    return 0 if server.started else 1


def run_on_ray(config: ServerConfig, scale: ScaleConfig) -> int:
    """Serve through Ray Serve (ray is imported only here)."""
    try:
        require_ray()
    except RuntimeError as exc:
        print(f"augury: error: {exc}", file=sys.stderr)
        return 2
    from augury.scale.app import serve_on_ray

    return serve_on_ray(config, scale)
