"""The chart renders with Helm's real engine, lints clean, and every object it renders is one a
real cluster accepts: built-in kinds against Kubernetes' own OpenAPI schemas
(kubernetes-validate), kopf's peering objects against their CRD. Also: the operator's command
line and environment that the chart writes are accepted by the operator's real parsers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import lint

from modelfleet_operator import config as operator_config
from modelfleet_operator import main as operator_main
from tests.unit.chart.helpers import (
    CHART_DIR,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    Manifest,
    Rendered,
    load_values,
    render,
)

CUSTOM_GROUPS = ("monitoring.coreos.com/", "kopf.dev/")
"""API groups whose kinds are custom resources: kubernetes-validate has no schema for them."""


def _operator_container(rendered: Rendered) -> Manifest:
    (workload,) = rendered.of_kind("Deployment", "StatefulSet")
    container: Manifest = workload["spec"]["template"]["spec"]["containers"][0]
    return container


def test_lint_strict(values_file: Path | None) -> None:
    report = lint(CHART_DIR, load_values(values_file), strict=True, kube_version="v1.33.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []


def test_builtin_objects_pass_kubernetes_schemas(rendered: Rendered) -> None:
    builtin = [o for o in rendered.objects if not o["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert builtin
    for obj in builtin:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_peering_objects_match_their_crd(rendered: Rendered) -> None:
    crds = {
        doc["spec"]["names"]["kind"]: doc
        for doc in yaml.safe_load_all((CHART_DIR / "crds" / "kopf-peering.yaml").read_text())
    }
    for obj in rendered.of_kind("KopfPeering", "ClusterKopfPeering"):
        crd = crds[obj["kind"]]
        version = crd["spec"]["versions"][0]
        assert obj["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
        jsonschema.validate(obj, version["schema"]["openAPIV3Schema"])
        assert ("namespace" in obj["metadata"]) == (crd["spec"]["scope"] == "Namespaced")


def test_monitoring_objects_are_well_formed(rendered: Rendered) -> None:
    for obj in rendered.of_kind("ServiceMonitor", "PodMonitor"):
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        endpoints = obj["spec"].get("endpoints") or obj["spec"].get("podMetricsEndpoints")
        assert endpoints and all(e["port"] in ("http", "https") for e in endpoints)
        for endpoint in endpoints:  # https: pods of an InferenceService with TLS
            assert (endpoint.get("scheme") == "https") == (endpoint["port"] == "https")
        assert obj["spec"]["selector"]["matchLabels"]


def test_names_are_unique_and_namespaced_objects_land_in_the_release_namespace(
    rendered: Rendered,
) -> None:
    keys = [
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered.objects
    ]
    assert len(keys) == len(set(keys))
    for obj in rendered.of_kind("Deployment", "StatefulSet", "Service", "ServiceAccount"):
        assert obj["metadata"]["namespace"] == NAMESPACE
    for obj in rendered.objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_workload_kind_and_peering_follow_replicas(rendered: Rendered) -> None:
    (workload,) = rendered.of_kind("Deployment", "StatefulSet")
    args: list[str] = _operator_container(rendered)["args"]
    if workload["spec"]["replicas"] == 1:
        assert workload["kind"] == "Deployment"
        assert workload["spec"]["strategy"] == {"type": "Recreate"}
        assert not any(a.startswith(("--peering", "--priority")) for a in args)
        assert not rendered.of_kind("KopfPeering", "ClusterKopfPeering")
    else:
        assert workload["kind"] == "StatefulSet"
        assert f"--peering={RELEASE}" in args
        assert rendered.of_kind("KopfPeering", "ClusterKopfPeering")


def _expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of container args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


@pytest.mark.parametrize("replicas", [2, 3, 10])
def test_ha_replicas_get_distinct_priorities(replicas: int) -> None:
    """kopf freezes every peer when two share a priority (O11): the pod index makes them differ."""
    rendered = render({"replicas": replicas})
    (sts,) = rendered.of_kind("StatefulSet")
    container = _operator_container(rendered)
    (pod_index,) = [e for e in container["env"] if e["name"] == "POD_INDEX"]
    assert pod_index["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    (priority_arg,) = [a for a in container["args"] if a.startswith("--priority=")]
    priorities = [
        int(_expand(priority_arg, {"POD_INDEX": str(i)}).split("=", 1)[1]) for i in range(replicas)
    ]
    assert len(set(priorities)) == replicas
    assert 0 not in priorities  # kopf's default priority: never collide with a stray kopf run
    assert sts["spec"]["podManagementPolicy"] == "Parallel"


def test_operator_args_and_env_parse_with_the_operators_own_settings(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container's args over its env, read as ``modelfleet operator`` reads them."""
    container = _operator_container(rendered)
    for var in container["env"]:
        if "value" in var:
            monkeypatch.setenv(var["name"], var["value"])
    args = [_expand(a, {"POD_INDEX": "0"}) for a in container["args"]]
    assert args[0] == "operator"
    parsed = operator_main.parse_settings(args[1:])
    assert parsed.liveness == "http://0.0.0.0:8080/healthz"
    (workload,) = rendered.of_kind("Deployment", "StatefulSet")
    watched = sorted({o["metadata"]["namespace"] for o in rendered.of_kind("Role")})
    assert sorted(parsed.namespaces) == watched
    assert parsed.all_namespaces == (not watched)
    assert (parsed.peering is not None) == (workload["kind"] == "StatefulSet")
    assert parsed.priority == (10 if parsed.peering is not None else None)


def test_operator_env_builds_the_operators_config(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {e["name"]: e["value"] for e in _operator_container(rendered)["env"] if "value" in e}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = operator_config.OperatorConfig()
    assert config.runtime_image == env["MODELFLEET_OPERATOR_RUNTIME_IMAGE"]
    assert config.default_resources["requests"]
    assert config.cluster_domain == "cluster.local"


def test_operator_config_values_reach_the_operators_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """operator.config keys become MODELFLEET_OPERATOR_<NAME>, read by the operator as set."""
    config = {
        "resync_seconds": 30,
        "coalesce_seconds": 0.5,
        "retries": 3,
        "handler_backoff": 1.5,
        "request_timeout": 20,
        "peering_lifetime": 15,
        "server_version": "1.34",
        "default_scale_target": {"cpu": 70},
    }
    container = _operator_container(render({"operator": {"config": config}}))
    for var in container["env"]:
        if "value" in var:
            monkeypatch.setenv(var["name"], var["value"])
    settings = operator_main.parse_settings(container["args"][1:])
    assert {name: getattr(settings, name) for name in config} == config


def test_digests_pin_both_images() -> None:
    values: dict[str, Any] = load_values(CHART_DIR / "ci" / "cluster-wide-values.yaml")
    container = _operator_container(render(values))
    assert container["image"] == f"{values['image']['repository']}@{values['image']['digest']}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    runtime = values["runtime"]["image"]
    assert (
        env["MODELFLEET_OPERATOR_RUNTIME_IMAGE"] == f"{runtime['repository']}@{runtime['digest']}"
    )


def test_defaults_use_the_app_version_tag() -> None:
    container = _operator_container(render())
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert container["image"] == f"ghcr.io/modelfleet/operator:{chart['appVersion']}"


def test_grafana_dashboard_configmap_carries_the_dashboard() -> None:
    rendered = render({"grafanaDashboard": {"enabled": True}})
    (cm,) = rendered.of_kind("ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART_DIR / "dashboards" / "modelfleet-runtime.json").read_text()
    assert cm["data"]["modelfleet-runtime.json"].strip() == shipped.strip()


def test_notes_say_what_to_apply_next(rendered: Rendered) -> None:
    assert "kubectl apply" in rendered.notes
    assert "kind: InferenceService" in rendered.notes
    assert "never upgrades" in rendered.notes  # the CRD upgrade step
    assert "/v2/models/iris/infer" in rendered.notes
