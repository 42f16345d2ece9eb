"""An InferenceService's life on the real control plane: canary split, promotion and rollback;
drift undone; deletion by the real garbage collector."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import REPO, isvc, wait_ready
from tests.e2e.kube import Cluster, Manifest, wait_for

pytestmark = pytest.mark.timeout(300)
ISVC_LABEL = "serving.modelfleet.dev/inferenceservice"
DRIFT_DEADLINE = 10.0
"""Seconds within which the operator must undo a change made by hand (issue 9)."""


def live_pods(cluster: Cluster, namespace: str, name: str) -> list[Manifest]:
    pods = cluster.list("pods", namespace, f"{ISVC_LABEL}={name}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def model_of(pod: Manifest) -> tuple[str, str]:
    """Which model a pod serves: its storage URI and version selection, from its env."""
    env = {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}
    return env["MODELFLEET_MODEL_URI"], env.get("MODELFLEET_VERSIONS", "")


def ready_pods_by_model(cluster: Cluster, namespace: str, name: str) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for pod in live_pods(cluster, namespace, name):
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
        if conditions.get("Ready") == "True":
            counts[model_of(pod)] = counts.get(model_of(pod), 0) + 1
    return counts


def canary(cluster: Cluster, namespace: str, name: str) -> Manifest:
    example: Manifest = __import__("yaml").safe_load(
        (REPO / "crds" / "examples" / "canary.yaml").read_text()
    )
    example["metadata"].update(name=name, namespace=namespace)
    cluster.apply(example)
    return wait_ready(cluster, namespace, name)


def wait_only_model(cluster: Cluster, namespace: str, model: tuple[str, str]) -> None:
    """Until the five Ready pods all serve ``model`` and the canary Deployment is gone."""
    wait_for(lambda: ready_pods_by_model(cluster, namespace, "iris") == {model: 5}, 60, f"{model}")
    wait_for(
        lambda: cluster.get("deployment", "iris-predictor-canary", namespace) is None,
        30,
        "the canary Deployment removed",
    )


def patch_spec(cluster: Cluster, namespace: str, name: str, predictor: dict[str, Any]) -> None:
    patch = json.dumps({"spec": {"predictor": predictor}})
    cluster.kubectl("patch", "isvc", name, "-n", namespace, "--type=merge", "-p", patch)


def test_canary_split_then_promotion(cluster: Cluster, namespace: str) -> None:
    status = canary(cluster, namespace, "iris")["status"]
    stable = cluster.get("deployment", "iris-predictor", namespace)
    canary_ = cluster.get("deployment", "iris-predictor-canary", namespace)
    assert stable and canary_
    assert (stable["spec"]["replicas"], canary_["spec"]["replicas"]) == (4, 1)
    v2, v3 = ("s3://models/iris", "[2]"), ("s3://models/iris", "[3]")
    assert ready_pods_by_model(cluster, namespace, "iris") == {v2: 4, v3: 1}
    assert status["canaryTrafficPercent"] == 20
    route = cluster.get("httproute", "iris", namespace)  # the Gateway API CRDs are installed
    assert route is not None
    weights = sorted(b["weight"] for b in route["spec"]["rules"][0]["backendRefs"])
    assert weights == [20, 80]

    patch_spec(cluster, namespace, "iris", {"canaryTrafficPercent": 100})
    wait_only_model(cluster, namespace, v3)
    wait_ready(cluster, namespace, "iris")
    assert ready_pods_by_model(cluster, namespace, "iris") == {v3: 5}


def test_canary_rollback(cluster: Cluster, namespace: str) -> None:
    canary(cluster, namespace, "iris")
    stable_before = cluster.get("deployment", "iris-predictor", namespace)
    assert stable_before is not None
    patch_spec(cluster, namespace, "iris", {"canaryTrafficPercent": 0})
    wait_only_model(cluster, namespace, ("s3://models/iris", "[2]"))
    stable_after = cluster.get("deployment", "iris-predictor", namespace)
    assert stable_after is not None
    # The stable Deployment's pods never changed: same template, same ReplicaSet.
    assert stable_after["spec"]["template"] == stable_before["spec"]["template"]


def _restored_within(what: str, condition: Any) -> float:
    started = time.monotonic()
    wait_for(condition, DRIFT_DEADLINE, what, every=0.1)
    return time.monotonic() - started


def test_drift_is_undone_within_ten_seconds(cluster: Cluster, namespace: str) -> None:
    cluster.apply(isvc("drift", minReplicas=2, maxReplicas=2), namespace=namespace)
    wait_ready(cluster, namespace, "drift")
    deployment = cluster.get("deployment", "drift-predictor", namespace)
    service = cluster.get("service", "drift", namespace)
    assert deployment and service

    cluster.kubectl("delete", "deployment", "drift-predictor", "-n", namespace, "--wait=false")
    _restored_within(
        "the deleted Deployment re-created",
        lambda: (
            (d := cluster.get("deployment", "drift-predictor", namespace)) is not None
            and d["metadata"]["uid"] != deployment["metadata"]["uid"]
        ),
    )

    port_patch = json.dumps([{"op": "replace", "path": "/spec/ports/0/port", "value": 8888}])
    cluster.kubectl("patch", "service", "drift", "-n", namespace, "--type=json", "-p", port_patch)
    _restored_within(
        "the Service's port restored",
        lambda: (
            (cluster.get("service", "drift", namespace) or {})
            .get("spec", {})
            .get("ports", [{}])[0]
            .get("port")
            == service["spec"]["ports"][0]["port"]
        ),
    )

    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    cluster.kubectl(
        "set", "image", "deployment/drift-predictor", "runtime=evil:latest", "-n", namespace
    )
    _restored_within(
        "the image reverted",
        lambda: (
            (cluster.get("deployment", "drift-predictor", namespace) or {})["spec"]["template"][
                "spec"
            ]["containers"][0]["image"]
            == image
        ),
    )

    cluster.kubectl("scale", "deployment", "drift-predictor", "-n", namespace, "--replicas=5")
    _restored_within(
        "replicas scaled back to 2",
        lambda: (
            (cluster.get("deployment", "drift-predictor", namespace) or {})
            .get("spec", {})
            .get("replicas")
            == 2
        ),
    )
    wait_ready(cluster, namespace, "drift")


def test_deletion_by_the_garbage_collector(cluster: Cluster, namespace: str) -> None:
    cluster.apply(isvc("doomed", minReplicas=2, maxReplicas=4), namespace=namespace)
    found = wait_ready(cluster, namespace, "doomed")
    assert not found["metadata"].get("finalizers"), "deletion must not depend on the operator"
    kinds = "deployments,replicasets,pods,services,horizontalpodautoscalers,poddisruptionbudgets"

    def children() -> list[str]:
        out = cluster.kubectl("get", kinds, "-n", namespace, "-o", "name").stdout
        return out.split()

    before = children()
    assert any(c.startswith("horizontalpodautoscaler") for c in before), before
    assert any(c.startswith("poddisruptionbudget") for c in before), before
    cluster.kubectl("delete", "isvc", "doomed", "-n", namespace, "--timeout=60s")
    wait_for(lambda: children() == [], 60, "every child collected")
    cluster.kubectl("delete", "namespace", namespace, "--timeout=90s", timeout=120)
    assert cluster.get("namespace", namespace) is None
