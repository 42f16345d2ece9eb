"""What the operator writes, read from the real API server's audit log: one Deployment write
per spec change, replicas left to the autoscaler, and an HPA/KEDA switch that never has both
autoscalers at once."""

from __future__ import annotations

import functools
import json

import pytest

from tests.e2e.conftest import isvc, wait_ready
from tests.e2e.kube import Cluster, wait_for

pytestmark = pytest.mark.timeout(300)


def patch_predictor(cluster: Cluster, namespace: str, name: str, **fields: object) -> None:
    patch = json.dumps({"spec": {"predictor": fields}})
    cluster.kubectl("patch", "isvc", name, "-n", namespace, "--type=merge", "-p", patch)


def generation_ready(cluster: Cluster, namespace: str, name: str) -> bool:
    found = cluster.get("inferenceservice", name, namespace) or {}
    generation = found.get("metadata", {}).get("generation")
    return any(
        c["type"] == "Ready" and c["status"] == "True" and c["observedGeneration"] == generation
        for c in found.get("status", {}).get("conditions") or []
    )


def test_spec_update_is_one_deployment_write(cluster: Cluster, namespace: str) -> None:
    cluster.apply(isvc("iris", minReplicas=1, maxReplicas=3), namespace=namespace)
    wait_ready(cluster, namespace, "iris")
    audit = cluster.audit()
    patch_predictor(cluster, namespace, "iris", model={"storageUri": "s3://models/iris-v2"})
    wait_for(lambda: generation_ready(cluster, namespace, "iris"), 60, "Ready for generation 2")
    deployment = cluster.get("deployment", "iris-predictor", namespace)
    assert deployment is not None and "s3://models/iris-v2" in json.dumps(deployment)
    writes = [
        (w.verb, w.resource)
        for w in audit.operator_writes()
        if w.namespace == namespace and w.resource.startswith("deployments")
    ]
    assert writes == [("patch", "deployments")]


def test_replicas_are_left_to_the_autoscaler(cluster: Cluster, namespace: str) -> None:
    cluster.apply(isvc("iris", minReplicas=1, maxReplicas=4), namespace=namespace)
    wait_ready(cluster, namespace, "iris")
    # As the HPA would, within its bounds: the operator must not undo it.
    cluster.kubectl("scale", "deployment", "iris-predictor", "-n", namespace, "--replicas=3")
    patch_predictor(cluster, namespace, "iris", maxReplicas=5)
    wait_for(
        lambda: (cluster.get("hpa", "iris-predictor", namespace) or {})["spec"]["maxReplicas"] == 5,
        30,
        "HPA maxReplicas 5",
    )
    wait_for(lambda: generation_ready(cluster, namespace, "iris"), 60, "Ready for generation 2")
    deployment = cluster.get("deployment", "iris-predictor", namespace)
    assert deployment is not None and deployment["spec"]["replicas"] == 3


def test_hpa_keda_switch_never_overlaps(cluster: Cluster, namespace: str) -> None:
    cluster.apply(isvc("iris", minReplicas=1, maxReplicas=4), namespace=namespace)
    wait_ready(cluster, namespace, "iris")
    audit = cluster.audit()
    for metric, present, gone in (("rps", "scaledobject", "hpa"), ("cpu", "hpa", "scaledobject")):
        patch_predictor(cluster, namespace, "iris", scaleMetric=metric)
        wait_for(functools.partial(cluster.get, present, "iris-predictor", namespace), 30, present)
        assert cluster.get(gone, "iris-predictor", namespace) is None
    # From the audit log: each autoscaler is deleted (answered) before the other is created.
    steps = [
        (e.received, e.completed, e.verb, e.resource)
        for e in audit.operator_writes()
        if e.namespace == namespace and e.resource in ("horizontalpodautoscalers", "scaledobjects")
    ]
    live = {"horizontalpodautoscalers"}  # before the first switch
    for _received, _completed, verb, resource in sorted(steps):
        if verb == "delete":
            live.discard(resource)
        else:
            live.add(resource)
        assert len(live) <= 1, steps
    deletes = [s for s in steps if s[2] == "delete"]
    creates = [s for s in steps if s[2] == "patch"]
    assert len(deletes) == 2 and len(creates) == 2, steps
    for delete, create in zip(deletes, creates, strict=True):
        assert delete[1] <= create[0], (delete, create)  # answered before the next one arrived
