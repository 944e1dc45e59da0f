"""ScaleConfig, the --ray flags of `augury serve`, and the error without ray installed."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from augury.cli.main import build_parser, main
from augury.cli.serve import scale_from_args
from augury.scale.config import ScaleConfig, parse_autoscale, require_ray


def test_autoscale_takes_min_and_max() -> None:
    assert parse_autoscale("1,4") == (1, 4)
    assert parse_autoscale(" 0 , 2 ") == (0, 2)


@pytest.mark.parametrize("text", ["4", "1,2,3", "a,b", "3,1", "0,0", "-1,2"])
def test_bad_autoscale_names_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="autoscale") as info:
        parse_autoscale(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"replicas": 0}, "replicas must be at least 1, got 0"),
        ({"autoscale": (3, 2)}, "autoscale needs"),
        ({"target_ongoing_requests": 0}, "target_ongoing_requests must be positive"),
        ({"llm_cpus": -1}, "llm_cpus must be >= 0, got -1"),
        ({"report_interval_s": 0}, "report_interval_s must be positive"),
        ({"upscale_delay_s": -1}, "upscale_delay_s and downscale_delay_s must be >= 0"),
    ],
)
def test_bad_scale_config_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScaleConfig(**fields)


def test_scaling_options_fixed_or_autoscaled() -> None:
    fixed = ScaleConfig(replicas=3).scaling_options(16)
    assert fixed == {"max_ongoing_requests": 16, "num_replicas": 3}
    auto = ScaleConfig(autoscale=(0, 4), target_ongoing_requests=2, upscale_delay_s=5)
    options = auto.scaling_options(8)
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 0, "max_replicas": 4, "initial_replicas": 1, "target_ongoing_requests": 2,
        "upscale_delay_s": 5, "downscale_delay_s": 600.0,
    }  # fmt: skip
    assert ScaleConfig(autoscale=(2, 5)).max_replicas == 5
    assert ScaleConfig(replicas=3).max_replicas == 3


def test_ray_flags_become_a_scale_config() -> None:
    args = build_parser().parse_args(
        ["serve", "--ray", "--autoscale", "1,3", "--address", "10.0.0.1:6379",
         "--ray-models", "digits, fraud", "--replica-cpus", "2", "--max-num-seqs", "32"]
    )  # fmt: skip
    scale = scale_from_args(args)
    assert args.ray and scale.autoscale == (1, 3) and scale.address == "10.0.0.1:6379"
    assert scale.models == ("digits", "fraud") and scale.llm_cpus == 2.0
    assert scale.max_ongoing_requests == 32
    plain = scale_from_args(build_parser().parse_args(["serve", "--replicas", "2"]))
    assert plain.replicas == 2 and plain.autoscale is None and plain.models is None


def test_replicas_and_autoscale_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--replicas", "2", "--autoscale", "1,2"])
    assert "not allowed with argument" in capsys.readouterr().err


def without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name.split(".")[0] == "ray" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    without_ray(monkeypatch)
    with pytest.raises(RuntimeError, match=r"pip install 'augury\[ray\]'"):
        require_ray()


def test_serve_ray_without_ray_exits_2_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    without_ray(monkeypatch)
    assert main(["serve", "--ray", "--replicas", "2", "--log-level", "error"]) == 2
    assert "pip install 'augury[ray]'" in capsys.readouterr().err


def test_serve_bad_autoscale_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--ray", "--autoscale", "5,1", "--log-level", "error"]) == 2
    assert "--autoscale" in capsys.readouterr().err
