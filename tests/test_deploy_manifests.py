"""deploy/kubernetes stays consistent with the code: the commands parse, the names and paths line up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from crest_proxy.cli import build_parser
from crest_proxy.policy.files import read_policy

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    """Every manifest in the kustomization, by (kind, name)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    found = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / resource).read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def pod(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["spec"]["template"]["spec"])


def container(doc: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    return next(c for c in pod(doc)["initContainers" if init else "containers"] if c["name"] == name)


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], dict[str, Any]]:
    return documents()


def test_the_proxy_command_parses_and_points_at_the_triton_service(docs: dict[Any, Any]) -> None:
    proxy = docs[("Deployment", "crest-proxy")]
    args = build_parser().parse_args(container(proxy, "proxy")["args"])
    assert args.setting_backend == "remote" and args.setting_host == "0.0.0.0"
    triton = docs[("Service", "crest-triton")]
    port = next(p["port"] for p in triton["spec"]["ports"] if p["name"] == "http")
    assert args.setting_url == f"http://{triton['metadata']['name']}:{port}"
    export = build_parser().parse_args(
        container(docs[("Deployment", "crest-triton")], "repository", init=True)["args"]
    )
    assert export.name == args.setting_model_name and export.format == "triton" and export.instance == "gpu"
    assert export.setting_model == args.setting_model


def test_policies_come_from_the_configmap_as_a_directory_and_validate(
    docs: dict[Any, Any], tmp_path: Path
) -> None:
    proxy = docs[("Deployment", "crest-proxy")]
    args = build_parser().parse_args(container(proxy, "proxy")["args"])
    mounts = {m["name"]: m for m in container(proxy, "proxy")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(proxy)["volumes"]}
    policies = next(name for name, v in volumes.items() if "configMap" in v)
    assert Path(mounts[policies]["mountPath"]) == args.setting_policies_dir
    assert "subPath" not in mounts[policies]  # a subPath mount never sees ConfigMap updates
    configmap = docs[("ConfigMap", volumes[policies]["configMap"]["name"])]
    for name, text in configmap["data"].items():
        (tmp_path / name).write_text(text)
        assert read_policy(tmp_path / name).tenant


def test_probes_use_the_proxy_and_triton_health_endpoints(docs: dict[Any, Any]) -> None:
    proxy = container(docs[("Deployment", "crest-proxy")], "proxy")
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/healthz"
    triton = container(docs[("Deployment", "crest-triton")], "triton")
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    hpa = docs[("HorizontalPodAutoscaler", "crest-proxy")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "crest-proxy"
