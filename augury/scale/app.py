"""The Ray Serve application: one ingress running the usual FastAPI app (OpenAI, KServe v2,
web page, /metrics) and, behind it, a deployment per LLM engine and per predictive model.

    HTTP -> Serve proxy -> ingress (create_app with RayEngineClient, ModelRepository whose
            batches go to RayExecutors) -> handle -> replica of "llm" / "model-<name>"

Replicas are balanced by Ray's router (of two replicas sampled, the one with fewer ongoing
requests) and autoscale on ongoing requests per replica within --autoscale MIN,MAX.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from augury.predict.config import MODEL_TOML
from augury.predict.repository import ModelRepository
from augury.scale import observe
from augury.scale.config import ScaleConfig
from augury.scale.llm_client import RayEngineClient
from augury.scale.load import ensure_board
from augury.scale.observe import LoadView
from augury.scale.predict_client import RayExecutors
from augury.scale.replicas import LLMReplica, PredictReplica
from augury.server.app import create_app, server_state
from augury.server.config import ServerConfig

log = logging.getLogger(__name__)

LLM_DEPLOYMENT = "llm"
INGRESS_DEPLOYMENT = "ingress"


def model_deployment(name: str) -> str:
    return f"model-{name}"


class Ingress:
    """The FastAPI app of `create_app`, built in the replica once the handles are ready."""

    def __init__(
        self,
        config: ServerConfig,
        scale: ScaleConfig,
        llm: DeploymentHandle[Any],
        models: Mapping[str, DeploymentHandle[Any]],
    ) -> None:
        self._config = config
        self._scale = scale
        self._llm = llm
        self._models = dict(models)
        self._view: LoadView | None = None
        self._engine: RayEngineClient | None = None

    async def __serve_build_asgi_app__(self) -> FastAPI:
        view = LoadView(self._scale.app_name, self._scale.report_interval_s)
        await view.refresh()
        view.start()
        self._view = view
        self._engine = await RayEngineClient.connect(self._llm, LLM_DEPLOYMENT, view)
        app = create_app(self._config, engines=[self._engine], repository=self._repository())
        observe.install(app, view, server_state(app).metrics.registry)
        return app

    def _repository(self) -> ModelRepository | None:
        root = self._config.model_repository
        if root is None or not Path(root).is_dir():
            return None
        executors = RayExecutors(
            {name: handle for name, handle in self._models.items()},
            timeout_s=self._config.request_timeout,
        )
        # One batcher worker per possible replica, so that batches reach every replica.
        return ModelRepository(
            root,
            poll_interval_s=self._config.repository_poll_interval,
            batching={"instances": self._scale.max_replicas},
            executor=executors,
        )

    async def __del__(self) -> None:
        if self._engine is not None:
            await self._engine.shutdown()
        if self._view is not None:
            await self._view.stop()


def deployed_models(config: ServerConfig, scale: ScaleConfig) -> list[str]:
    """The predictive models that get their own deployment (ValueError for unknown names)."""
    root = config.model_repository
    if root is None or not Path(root).is_dir():
        if scale.models:
            raise ValueError(f"--ray-models given but there is no model repository at {root}")
        return []
    on_disk = sorted(p.parent.name for p in Path(root).glob(f"*/{MODEL_TOML}"))
    if scale.models is None:
        return on_disk
    unknown = sorted(set(scale.models) - set(on_disk))
    if unknown:
        raise ValueError(
            f"--ray-models: {', '.join(unknown)} not in {root} (it has: {', '.join(on_disk)})"
        )
    return list(scale.models)


def absolute_paths(config: ServerConfig) -> ServerConfig:
    """Paths resolved here: replicas run with another working directory."""

    def resolve(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    engine = dataclasses.replace(config.engine, model=resolve(config.engine.model))
    return dataclasses.replace(
        config,
        engine=engine,
        model_repository=resolve(config.model_repository),
        batch_dir=resolve(config.batch_dir),
    )


def build_application(config: ServerConfig, scale: ScaleConfig) -> Any:
    """The bound Serve application (pass to serve.run)."""
    config = absolute_paths(config)
    grace = config.grace_period
    llm = (
        serve.deployment(name=LLM_DEPLOYMENT)(LLMReplica)
        .options(
            ray_actor_options={"num_cpus": scale.llm_cpus, "num_gpus": scale.llm_gpus},
            graceful_shutdown_timeout_s=grace,
            **scale.scaling_options(scale.max_ongoing_requests),
        )
        .bind(config.engine, scale.app_name, scale.report_interval_s)
    )
    models = {
        name: serve.deployment(name=model_deployment(name))(PredictReplica)
        .options(
            ray_actor_options={"num_cpus": scale.predict_cpus},
            graceful_shutdown_timeout_s=grace,
            **scale.scaling_options(8),
        )
        .bind(config.model_repository, name, scale.app_name, scale.report_interval_s)
        for name in deployed_models(config, scale)
    }
    ingress = serve.deployment(name=INGRESS_DEPLOYMENT)(serve.ingress()(Ingress)).options(
        num_replicas=1,
        max_ongoing_requests=4096,
        ray_actor_options={"num_cpus": 0},
        graceful_shutdown_timeout_s=grace,
    )
    return ingress.bind(config, scale, llm, models)


def start(
    config: ServerConfig, scale: ScaleConfig, on_connected: Callable[[], None] | None = None
) -> None:
    """Connect to (or start) Ray, start Serve's proxy on config.host:port and deploy.
    on_connected runs as soon as ray.init returns (it installs its own SIGTERM handler)."""
    if not ray.is_initialized():
        extra = {} if scale.address else scale.ray_init
        ray.init(address=scale.address, **extra)
    if on_connected is not None:
        on_connected()
    http: dict[str, Any] = {"host": config.host, "port": config.port}
    if config.ssl_certfile is not None:
        http.update(ssl_certfile=config.ssl_certfile, ssl_keyfile=config.ssl_keyfile)
    serve.start(http_options=http)
    ensure_board(scale.app_name)
    serve.run(
        build_application(config, scale), name=scale.app_name, route_prefix="/", blocking=False
    )


def stop(scale: ScaleConfig) -> None:
    """Delete the application and its load board (Ray itself keeps running if it was joined)."""
    serve.delete(scale.app_name)
    board = ensure_board(scale.app_name)
    ray.kill(board)


def serve_on_ray(config: ServerConfig, scale: ScaleConfig) -> int:
    """`augury serve --ray`: deploy, then serve until SIGINT/SIGTERM (exit code 0).
    A signal that arrives while deploying lets the deployment finish, then shuts it down."""
    done = threading.Event()

    def on_signal(*_: object) -> None:
        done.set()

    def catch_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)

    # ray.init installs a SIGTERM handler that exits with code 15 (and, in C, absl's
    # failure-signal handler that aborts): ours goes back in the moment ray.init returns.
    catch_signals()
    start(config, scale, on_connected=catch_signals)
    scheme = "https" if config.ssl_certfile else "http"
    log.info("serving on %s://%s:%d through Ray Serve", scheme, config.host, config.port)
    while not done.wait(0.5):
        catch_signals()  # in case a later Ray call installed its own again
    log.info("shutting down the Ray Serve application (grace %.0f s)", config.grace_period)
    stop(scale)
    if scale.address is None:
        serve.shutdown()
        ray.shutdown()
    return 0


def build_from_flags(args: dict[str, str]) -> Any:
    """Application builder for `serve run` and KubeRay's serveConfigV2:
    `import_path: augury.scale.app:build_from_flags` with `args: {flags: "--replicas 2 ..."}`,
    the flags being those of `augury serve` (host and port come from Serve's http_options)."""
    from augury.cli.main import build_parser
    from augury.cli.serve import config_from_args, scale_from_args

    unknown = set(args) - {"flags"}
    if unknown:
        raise ValueError(f"unknown application args {sorted(unknown)}; only 'flags' is accepted")
    parsed = build_parser().parse_args(["serve", "--ray", *shlex.split(args.get("flags", ""))])
    return build_application(config_from_args(parsed), scale_from_args(parsed))
