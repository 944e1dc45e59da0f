"""How `augury serve --ray` lays models out on Ray Serve (no ray import here)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

RAY_MISSING = "Ray is not installed: pip install 'augury[ray]' to serve with --ray"


def require_ray() -> None:
    """Raise a RuntimeError naming the extra to install when ray (with serve) is missing."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        raise RuntimeError(RAY_MISSING)


def parse_autoscale(text: str) -> tuple[int, int]:
    """'MIN,MAX' -> (min, max); ValueError naming the value otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--autoscale takes MIN,MAX replicas (e.g. 1,4), got {text!r}")
    low, high = int(parts[0]), int(parts[1])
    if high < 1 or low > high:
        raise ValueError(f"--autoscale needs 0 <= MIN <= MAX and MAX >= 1, got {text!r}")
    return low, high


@dataclass
class ScaleConfig:
    """Replica counts and resources of the Ray Serve deployments."""

    replicas: int = 1
    """Fixed replicas per deployment (ignored when `autoscale` is set)."""
    autoscale: tuple[int, int] | None = None
    """(min, max) replicas; Ray scales between them on ongoing requests per replica."""
    target_ongoing_requests: float = 4.0
    """Autoscaling target: ongoing requests per replica Ray steers towards."""
    upscale_delay_s: float = 30.0
    """Autoscaling: how long the load must stay above target before replicas are added."""
    downscale_delay_s: float = 600.0
    """Autoscaling: how long it must stay below before replicas are removed."""
    max_ongoing_requests: int = 64
    """Requests one LLM replica takes at once (its engine batches them); more wait in Ray."""
    address: str | None = None
    """Ray cluster to join ('auto', 'ray://host:10001', 'host:6379'); None starts a local one."""
    llm_cpus: float = 1.0
    """CPUs Ray reserves for each LLM replica (0 lets replicas share cores, as in tests)."""
    predict_cpus: float = 0.5
    """CPUs Ray reserves for each predictive-model replica."""
    llm_gpus: float = 0.0
    """GPUs per LLM replica (set with --device cuda)."""
    models: tuple[str, ...] | None = None
    """Predictive models to deploy on Ray; None: every model of the repository. Others are
    served in the ingress process."""
    report_interval_s: float = 0.5
    """How often each replica reports its load (stats, /metrics, dashboard)."""
    app_name: str = "augury"
    """The Serve application's name (the load board's name derives from it)."""
    ray_init: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of ray.init when starting a local instance (tests: num_cpus)."""

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {self.replicas}")
        if self.autoscale is not None:
            low, high = self.autoscale
            if high < 1 or not 0 <= low <= high:
                raise ValueError(f"autoscale needs 0 <= min <= max, max >= 1, got {self.autoscale}")
        if self.target_ongoing_requests <= 0:
            raise ValueError(
                f"target_ongoing_requests must be positive, got {self.target_ongoing_requests}"
            )
        if self.upscale_delay_s < 0 or self.downscale_delay_s < 0:
            raise ValueError(
                "upscale_delay_s and downscale_delay_s must be >= 0, got "
                f"{self.upscale_delay_s}, {self.downscale_delay_s}"
            )
        if self.max_ongoing_requests < 1:
            raise ValueError(
                f"max_ongoing_requests must be at least 1, got {self.max_ongoing_requests}"
            )
        for name in ("llm_cpus", "predict_cpus", "llm_gpus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.report_interval_s <= 0:
            raise ValueError(f"report_interval_s must be positive, got {self.report_interval_s}")

    @property
    def max_replicas(self) -> int:
        """The most replicas a deployment can have (sizes the ingress's batch workers)."""
        return self.autoscale[1] if self.autoscale is not None else self.replicas

    def scaling_options(self, max_ongoing_requests: int) -> dict[str, Any]:
        """Keyword arguments of `Deployment.options` for the replica count or autoscaling."""
        options: dict[str, Any] = {"max_ongoing_requests": max_ongoing_requests}
        if self.autoscale is None:
            options["num_replicas"] = self.replicas
        else:
            low, high = self.autoscale
            options["autoscaling_config"] = {
                "min_replicas": low,
                "max_replicas": high,
                "initial_replicas": max(low, 1),
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
            }
        return options
