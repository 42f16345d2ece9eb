"""Render tests: goldens from crds/examples, real Kubernetes schemas, and the rules the
Deployment, autoscalers, canary and secrets must follow.

Regenerate the goldens with ``MODELFLEET_REGEN_GOLDEN=1 pytest tests/unit/operator``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelfleet_operator import labels
from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import parse
from modelfleet_operator.render import managed_kinds, render
from modelfleet_runtime.config import Settings
from tests.unit.operator.helpers import GOLDEN, isvc, load, predictor, valid_examples

K8S_VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]
CUSTOM_KINDS = {"ScaledObject", "HTTPRoute"}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "gateway": {"gateway_api": True},
    "imagevolume": {"server_version": "v1.37.2"},
}


def _render(body: dict[str, Any], config: OperatorConfig) -> list[dict[str, Any]]:
    return render(parse(body), config)


def _cases() -> list[tuple[Path, str]]:
    cases = [(path, "default") for path in valid_examples()]
    cases += [(p, "gateway") for p in valid_examples() if p.stem.startswith("canary")]
    return [*cases, *[(p, "imagevolume") for p in valid_examples() if p.stem == "oci"]]


@pytest.mark.parametrize(("example", "variant"), _cases(), ids=lambda v: getattr(v, "stem", v))
def test_golden(example: Path, variant: str, config: OperatorConfig) -> None:
    cfg = config.model_copy(update=VARIANTS[variant])
    text = yaml.safe_dump_all(_render(load(example), cfg), sort_keys=False, width=100)
    golden = GOLDEN / f"{example.stem}.{variant}.yaml"
    if os.environ.get("MODELFLEET_REGEN_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden {golden.name}: run with MODELFLEET_REGEN_GOLDEN=1"
    assert text == golden.read_text(), f"{golden.name} differs; regenerate if intended"


def _all_rendered(config: OperatorConfig) -> list[dict[str, Any]]:
    gateway = config.model_copy(update={"gateway_api": True})
    return [obj for p in valid_examples() for c in (config, gateway) for obj in _render(load(p), c)]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_builtin_object_passes_kubernetes_schemas(
    version: str, config: OperatorConfig
) -> None:
    for obj in _all_rendered(config):
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_scaled_object_shape(config: OperatorConfig) -> None:
    objs = _render(load(Path("crds/examples/keda.yaml")), config)
    so = next(o for o in objs if o["kind"] == "ScaledObject")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "resnet-predictor",
    }
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (0, 8)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert set(trigger["metadata"]) == {"serverAddress", "query", "threshold"}
    assert all(isinstance(v, str) for v in trigger["metadata"].values())
    assert trigger["metadata"]["threshold"] == "4"
    assert (
        'namespace="default"' in trigger["metadata"]["query"]
        or "ml" in trigger["metadata"]["query"]
    )


def test_http_route_shape(config: OperatorConfig) -> None:
    cfg = config.model_copy(update={"gateway_api": True, "gateway_namespace": "gw"})
    objs = _render(load(Path("crds/examples/canary.yaml")), cfg)
    route = next(o for o in objs if o["kind"] == "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "modelfleet", "namespace": "gw"}]
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("iris-predictor", 80),
        ("iris-predictor-canary", 20),
    ]
    services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
    assert {b["name"] for b in backends} <= services


def test_render_is_deterministic(config: OperatorConfig) -> None:
    for path in valid_examples():
        first = json.dumps(_render(load(path), config))
        assert json.dumps(_render(load(path), config)) == first


def test_children_have_labels_namespace_and_no_owner(config: OperatorConfig) -> None:
    for obj in _all_rendered(config):
        meta = obj["metadata"]
        assert "ownerReferences" not in meta
        assert meta["namespace"]
        assert labels.managed_selector().items() <= meta["labels"].items()
        assert meta["labels"][labels.INSTANCE]


def test_managed_kinds_cover_every_rendered_kind(config: OperatorConfig) -> None:
    kinds = {(k.api_version, k.kind) for k in managed_kinds()}
    assert {(o["apiVersion"], o["kind"]) for o in _all_rendered(config)} <= kinds
    assert all(
        k.plural == k.kind.lower() + ("es" if k.kind.endswith("s") else "s")
        for k in managed_kinds()
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"minReplicas": 2}, None),
        ({"minReplicas": 1, "maxReplicas": 3}, "HorizontalPodAutoscaler"),
        ({"maxReplicas": 3, "scaleMetric": "memory"}, "HorizontalPodAutoscaler"),
        ({"maxReplicas": 3, "scaleMetric": "rps"}, "ScaledObject"),
        ({"minReplicas": 0, "maxReplicas": 3, "scaleMetric": "concurrency"}, "ScaledObject"),
    ],
)
def test_one_autoscaler_at_most_and_replicas_left_to_it(
    fields: dict[str, Any], expected: str | None, config: OperatorConfig
) -> None:
    objs = _render(isvc(predictor(**fields)), config)
    scalers = [o["kind"] for o in objs if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    assert scalers == ([expected] if expected else [])
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    assert ("replicas" in dep["spec"]) == (expected is None)


def test_hpa_to_keda_switch_leaves_no_hpa(config: OperatorConfig) -> None:
    hpa = _render(isvc(predictor(maxReplicas=3, scaleMetric="cpu")), config)
    keda = _render(isvc(predictor(maxReplicas=3, scaleMetric="rps")), config)
    assert "ScaledObject" not in {o["kind"] for o in hpa}
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in keda}


def _deployment(objs: list[dict[str, Any]], name: str = "iris-predictor") -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def test_deployment_rollout_probes_and_shutdown(config: OperatorConfig) -> None:
    dep = _deployment(_render(isvc(predictor(minReplicas=2)), config))
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert "startupProbe" in ctr
    assert ctr["lifecycle"]["preStop"]["sleep"]["seconds"] >= 5
    grace = Settings.model_fields["grace_period"].default
    assert (
        pod["terminationGracePeriodSeconds"]
        > grace + ctr["lifecycle"]["preStop"]["sleep"]["seconds"]
    )
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    mounts = {m["mountPath"] for m in ctr["volumeMounts"]}
    assert "/tmp" in mounts and _env(ctr)["MODELFLEET_MODEL_DIR"] in mounts


def _env(ctr: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in ctr["env"] if "value" in e}


def test_container_env_is_what_the_runtime_reads(
    config: OperatorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in valid_examples():
        for dep in (o for o in _render(load(path), config) if o["kind"] == "Deployment"):
            (ctr,) = dep["spec"]["template"]["spec"]["containers"]
            env = _env(ctr)
            with monkeypatch.context() as m:
                for name, value in env.items():
                    m.setenv(name, value)
                settings = Settings()
            assert settings.host == "0.0.0.0"
            assert settings.port == 8080
            assert settings.model_name == load(path)["metadata"]["name"]
            assert settings.model_uri == env["MODELFLEET_MODEL_URI"]
            assert not [
                n
                for n in env
                if n.startswith("MODELFLEET_") and n[11:].lower() not in Settings.model_fields
            ]


def test_batching_and_versions_reach_the_runtime(
    config: OperatorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = _deployment(
        _render(load(Path("crds/examples/batching-versions.yaml")), config), "bert-predictor"
    )
    (ctr,) = dep["spec"]["template"]["spec"]["containers"]
    for name, value in _env(ctr).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.max_batch_size, settings.max_queue_delay_us) == (32, 2000)
    assert settings.preferred_batch_sizes == [8, 16, 32]
    assert (settings.version_policy, settings.num_versions) == ("latest", 2)
    assert set(settings.sha256) == {7, 8}
    assert ctr["image"] == "ghcr.io/modelfleet/runtime:0.1.1"


SECRET_CANARY = "do-not-leak-8c1f"


def test_secrets_by_reference_only(config: OperatorConfig) -> None:
    body = load(Path("crds/examples/private-s3.yaml"))
    body["spec"]["modelfleet"]["storage"]["secretRef"]["name"] = SECRET_CANARY
    body["spec"]["modelfleet"]["auth"]["secretRef"]["name"] = SECRET_CANARY + "-auth"
    objs = _render(body, config)
    dep = _deployment(objs, "fraud-predictor")
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in ctr["env"] if "valueFrom" in e}
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": SECRET_CANARY, "key": "AWS_ACCESS_KEY_ID"}
    assert refs["AWS_SECRET_ACCESS_KEY"]["name"] == SECRET_CANARY
    secret_vols = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secret_vols == [SECRET_CANARY + "-auth"]

    def literals(node: Any, path: str = "") -> list[str]:
        if isinstance(node, dict):
            return [
                p
                for k, v in node.items()
                if k not in ("secretKeyRef", "secret")
                for p in literals(v, f"{path}.{k}")
            ]
        if isinstance(node, list):
            return [p for i, v in enumerate(node) for p in literals(v, f"{path}[{i}]")]
        return [path] if SECRET_CANARY in str(node) else []

    assert literals(objs) == []


def test_pvc_is_mounted_read_only_and_served_as_file(config: OperatorConfig) -> None:
    dep = _deployment(_render(load(Path("crds/examples/pvc.yaml")), config), "yolo-predictor")
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert _env(ctr)["MODELFLEET_MODEL_URI"] == "file:///mnt/models/yolo"
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    assert ctr["image"].startswith("registry.example.com/modelfleet/runtime@sha256:")


def test_pdb_only_when_more_than_one_replica(config: OperatorConfig) -> None:
    one = _render(isvc(predictor(minReplicas=1)), config)
    many = _render(isvc(predictor(minReplicas=1, maxReplicas=3)), config)
    assert "PodDisruptionBudget" not in {o["kind"] for o in one}
    (pdb,) = [o for o in many if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_service_port_80_to_http_and_8081_to_grpc(config: OperatorConfig) -> None:
    objs = _render(isvc(predictor()), config)
    svc = next(o for o in objs if o["kind"] == "Service")
    assert svc["metadata"]["name"] == "iris"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {
            "name": "grpc",
            "port": 8081,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        },
    ]
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(env["MODELFLEET_PORT"]), "grpc": int(env["MODELFLEET_GRPC_PORT"])}
    assert labels.TRACK not in svc["spec"]["selector"]


def test_gcs_credentials_are_a_mounted_secret(config: OperatorConfig) -> None:
    spec = {
        "predictor": {"model": {"modelFormat": {"name": "onnx"}, "storageUri": "gs://b/m"}},
        "modelfleet": {"storage": {"secretRef": {"name": "gcs-key"}}},
    }
    dep = _deployment(_render(isvc(spec), config))
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    (vol,) = [v for v in pod["volumes"] if "secret" in v]
    assert vol["secret"]["secretName"] == "gcs-key"
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == vol["name"])
    assert mount["readOnly"] is True
    assert _env(ctr)["MODELFLEET_GCS_CREDENTIALS_FILE"] == f"{mount['mountPath']}/key.json"
    assert not [e for e in ctr["env"] if e["name"].startswith("AWS_")]


def test_operator_runtime_defaults_reach_env_and_grace(config: OperatorConfig) -> None:
    cfg = config.model_copy(
        update={"runtime_defaults": {"grace_period": "50", "log_level": "DEBUG"}}
    )
    dep = _deployment(_render(isvc(predictor()), cfg))
    pod = dep["spec"]["template"]["spec"]
    assert _env(pod["containers"][0])["MODELFLEET_LOG_LEVEL"] == "DEBUG"
    assert pod["terminationGracePeriodSeconds"] > 50 + 5
