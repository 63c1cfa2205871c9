"""deploy/kustomize: every overlay renders with kubectl and validates strictly offline; the manifests
say what the deployment needs (probes, non-root, read-only root, no exposed management port...)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import load_settings
from tests.deploy.kube import KUBERNETES_VERSIONS, KUSTOMIZE, find, one, render, validation_errors
from tests.e2e.server_process import ServerProcess

OVERLAYS = ("dev", "prod")
GATEWAY_PORTS = {8000, 8001, 8002}
MANAGEMENT_PORT = 8003


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(KUSTOMIZE / "overlays" / request.param)


def gateway_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objects, "Deployment", "modelgate")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def gateway_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers: dict[str, dict[str, Any]] = {c["name"]: c for c in gateway_pod(objects)["containers"]}
    return containers["gateway"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_overlay_validates_strictly(overlay: tuple[str, list[dict[str, Any]]], version: str) -> None:
    _, objects = overlay
    assert validation_errors(objects, version) == []


@pytest.mark.parametrize(
    ("overlay_name", "path", "old", "new", "expected"),
    [
        ("dev", "base/gateway-deployment.yaml", "readinessProbe:", "readinesProbe:", "'readinesProbe' was unexpected"),
        ("dev", "base/gateway-services.yaml", "port: 8000", "port: eight-thousand", "Service/modelgate"),
        ("dev", "base/gateway-hpa.yaml", "averageUtilization: 70", "averageUtilisation: 70", "averageUtilisation"),
        (
            "prod",
            "components/servicemonitor/servicemonitor.yaml",
            "interval: 15s",
            "interval: 15 seconds",
            "ServiceMonitor/modelgate",
        ),
        (
            "prod",
            "components/servicemonitor/servicemonitor.yaml",
            "endpoints:",
            "endpoint:",
            "ServiceMonitor/modelgate",
        ),
    ],
)
def test_a_typo_in_a_manifest_fails_validation(tmp_path: Path, overlay_name: str, path: str, old: str, new: str,
                                               expected: str) -> None:  # fmt: skip
    copy = tmp_path / "kustomize"
    shutil.copytree(KUSTOMIZE, copy)
    target = copy / path
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    errors = validation_errors(render(copy / "overlays" / overlay_name), KUBERNETES_VERSIONS[0], copy / "schemas")
    assert any(expected in error for error in errors), errors


def test_a_kustomization_naming_a_missing_file_fails_to_render(tmp_path: Path) -> None:
    copy = tmp_path / "kustomize"
    shutil.copytree(KUSTOMIZE, copy)
    (copy / "base" / "gateway-pdb.yaml").unlink()
    with pytest.raises(RuntimeError, match=r"gateway-pdb\.yaml"):
        render(copy / "overlays" / "dev")


def test_the_gateway_probes_the_v2_health_endpoints(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    container = gateway_container(overlay[1])
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {"requests", "limits"} <= set(container["resources"])


def test_the_gateway_runs_non_root_with_a_read_only_root_filesystem(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    pod = gateway_pod(overlay[1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert "fsGroup" in pod["securityContext"]
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in gateway_container(overlay[1])["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]


def test_services_expose_rest_grpc_and_metrics_but_never_the_management_port(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    objects = overlay[1]
    ports = {p["port"] for s in find(objects, "Service") if s["metadata"]["name"].startswith("modelgate")
             for p in s["spec"]["ports"]}  # fmt: skip
    assert ports == GATEWAY_PORTS
    every_port = {p.get("targetPort") for s in find(objects, "Service") for p in s["spec"]["ports"]} | {
        p["port"] for s in find(objects, "Service") for p in s["spec"]["ports"]
    }
    assert MANAGEMENT_PORT not in every_port
    policy = one(objects, "NetworkPolicy", "modelgate-gateway")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == GATEWAY_PORTS


def test_the_management_token_comes_from_a_secret(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    env = {e["name"]: e for e in gateway_container(objects)["env"]}
    ref = env["MODELGATE_MANAGEMENT_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert "value" not in env["MODELGATE_MANAGEMENT_TOKEN"]
    secrets = {s["metadata"]["name"] for s in find(objects, "Secret")}
    # dev generates a throwaway token; prod expects the operator to create the Secret (docs/deploy.md).
    assert (ref["name"] in secrets) == (name == "dev")


def test_the_model_repository_is_one_shared_read_write_many_volume(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    objects = overlay[1]
    claim = one(objects, "PersistentVolumeClaim", "modelgate-models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for deployment in find(objects, "Deployment"):
        claims = {v["persistentVolumeClaim"]["claimName"] for v in deployment["spec"]["template"]["spec"]["volumes"]
                  if "persistentVolumeClaim" in v}  # fmt: skip
        assert claims == {"modelgate-models"}, deployment["metadata"]["name"]


def test_every_reference_resolves(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """Selectors, scale targets and config references point at objects that exist (a typo would not)."""
    name, objects = overlay
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in find(objects, "Deployment")]

    def selects(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pod_labels)

    for service in find(objects, "Service"):
        assert selects(service["spec"]["selector"]), service["metadata"]["name"]
    for deployment in find(objects, "Deployment"):
        spec = deployment["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        config_maps = {c["metadata"]["name"] for c in find(objects, "ConfigMap")}
        for volume in spec["template"]["spec"]["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
    assert selects(one(objects, "PodDisruptionBudget", "modelgate")["spec"]["selector"]["matchLabels"])
    target = one(objects, "HorizontalPodAutoscaler", "modelgate")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "modelgate")
    for monitor in find(objects, "ServiceMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in find(objects, "Service") if wanted.items() <= s["metadata"]["labels"].items()]
        assert [s["metadata"]["name"] for s in services] == ["modelgate-metrics"]
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in services[0]["spec"]["ports"]}
    assert bool(find(objects, "ServiceMonitor")) == (name == "prod")


def test_the_prod_autoscaler_uses_cpu_and_in_flight_requests_from_the_adapter_rule() -> None:
    hpa = one(render(KUSTOMIZE / "overlays" / "prod"), "HorizontalPodAutoscaler", "modelgate")
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    rules = yaml.safe_load((KUSTOMIZE.parent / "prometheus-adapter" / "rules.yaml").read_text())["rules"]
    assert kinds["Pods"]["pods"]["metric"]["name"] in {rule["name"]["as"] for rule in rules}


def test_the_example_remote_models_and_gateway_settings_are_valid_for_the_gateway(tmp_path: Path) -> None:
    """The model configs the gateway seeds into the repository pass `modelgate models`; the settings load."""
    config = KUSTOMIZE / "base" / "config"
    names = []
    for path in sorted(config.glob("digits_*.yaml")):
        model = tmp_path / path.stem
        (model / "1").mkdir(parents=True)
        shutil.copy(path, model / "config.yaml")
        names.append(path.stem)
    assert names == ["digits_keras_tfs", "digits_torch_ts"]
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "models", "--model-repository", str(tmp_path),
                             "--json"], capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for name in names:
        assert name in result.stdout
    settings = load_settings(config / "gateway.yaml")
    assert (settings.http_port, settings.grpc_port, settings.metrics_port) == (8000, 8001, 8002)
    assert str(settings.model_repository) == "/models"


WAIT_SCRIPT = KUSTOMIZE / "base" / "config" / "wait_for_backends.py"


def wait_for(urls: str, seconds: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAIT_FOR": urls, "WAIT_SECONDS": seconds}
    return subprocess.run([sys.executable, str(WAIT_SCRIPT)], capture_output=True, text=True, timeout=120, env=env,
                          check=False)  # fmt: skip


@pytest.mark.e2e
def test_the_wait_for_backends_init_container_sees_a_tf_serving_model_available(gateway: ServerProcess) -> None:
    """The gateway's own TF Serving REST API stands in for TF Serving (the real one is not installable)."""
    result = wait_for(f"{gateway.url}/v1/models/digits_mlp", "60")
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.e2e
def test_the_wait_for_backends_init_container_gives_up_without_failing_the_pod(gateway: ServerProcess) -> None:
    result = wait_for(f"{gateway.url}/v1/models/no_such_model http://127.0.0.1:9/models/x", "1")
    assert result.returncode == 0
    assert "no_such_model not ready after 1 s; starting the gateway anyway" in result.stderr
    assert "127.0.0.1:9/models/x not ready" in result.stderr


def test_the_gateway_pod_waits_for_the_backends_it_points_at(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    init = {c["name"]: c for c in gateway_pod(overlay[1])["initContainers"]}
    urls = {e["name"]: e["value"] for e in init["wait-for-backends"]["env"]}["WAIT_FOR"].split()
    config = KUSTOMIZE / "base" / "config"
    torchserve = yaml.safe_load((config / "digits_torch_ts.yaml").read_text())["parameters"]
    tfserving = yaml.safe_load((config / "digits_keras_tfs.yaml").read_text())["parameters"]
    assert f"{torchserve['management_url']}/models/{torchserve['model_name']}" in urls
    assert f"http://{tfserving['address'].split(':')[0]}:8501/v1/models/{tfserving['model_name']}" in urls
