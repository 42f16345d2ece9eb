"""The operator at rest and under faults, on the real control plane.

* Idle: with 20 InferenceServices converged, the operator writes nothing for 60 s (a window
  that holds its resync), counted from the API server's audit log, not from the client side.
* The operator killed mid-reconcile and started again; kube-apiserver stopped for 15 s and
  started again (etcd keeps the data): watches resume, everything converges, no duplicate
  children.
"""

from __future__ import annotations

import collections
import datetime
import json
import signal
import subprocess
import time

import pytest

from tests.e2e.conftest import CLUSTER_SCRIPT, Operator, isvc, wait_ready
from tests.e2e.kube import AuditLog, Cluster, wait_for

ISVC_LABEL = "serving.modelfleet.dev/inferenceservice"
IDLE_WINDOW = 60.0
SPELLINGS = {"limits": {"cpu": "1000m", "memory": "1024Mi"}, "requests": {"cpu": "0.5"}}
API_OUTAGE = 15.0


def all_ready(cluster: Cluster, namespace: str, names: list[str]) -> bool:
    items = cluster.list("inferenceservices", namespace)
    ready = {
        i["metadata"]["name"]
        for i in items
        for c in i.get("status", {}).get("conditions") or []
        if c["type"] == "Ready"
        and c["status"] == "True"
        and c.get("observedGeneration") == i["metadata"]["generation"]
    }
    return set(names) <= ready


def children(cluster: Cluster, namespace: str) -> dict[str, set[str]]:
    """InferenceService -> the names of its managed Deployments and Services."""
    found: dict[str, set[str]] = collections.defaultdict(set)
    for kind in ("deployments", "services"):
        for item in cluster.list(kind, namespace, ISVC_LABEL):
            found[item["metadata"]["labels"][ISVC_LABEL]].add(f"{kind}/{item['metadata']['name']}")
    return dict(found)


def expected_children(names: list[str]) -> dict[str, set[str]]:
    """One Deployment; the Service and, with the Gateway API installed, the HTTPRoute's
    backend Service."""
    return {
        n: {f"deployments/{n}-predictor", f"services/{n}", f"services/{n}-predictor"} for n in names
    }


def terminating(cluster: Cluster) -> list[str]:
    namespaces = json.loads(cluster.kubectl("get", "namespaces", "-o", "json").stdout)["items"]
    return [n["metadata"]["name"] for n in namespaces if n["status"]["phase"] == "Terminating"]


def apply_many(cluster: Cluster, namespace: str, count: int, prefix: str) -> list[str]:
    names = [f"{prefix}-{i:02d}" for i in range(count)]
    cluster.apply(*(isvc(n, minReplicas=1) for n in names), namespace=namespace)
    return names


@pytest.mark.timeout(400)
def test_idle_operator_writes_nothing(cluster: Cluster, operator: Operator, namespace: str) -> None:
    # Half spell their resources as users do; the API server stores 1000m as 1 and 1024Mi as
    # 1Gi, which must not read as drift.
    names = [f"idle-{i:02d}" for i in range(20)]
    bodies = [isvc(n, minReplicas=1) for n in names]
    for body in bodies[::2]:
        body["spec"]["predictor"]["model"]["resources"] = SPELLINGS
    cluster.apply(*bodies, namespace=namespace)
    wait_for(lambda: all_ready(cluster, namespace, names), 180, "20 InferenceServices Ready", 1)
    stored = cluster.get("deployment", "idle-00-predictor", namespace)
    assert stored is not None
    limits = stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "1", "memory": "1Gi"}
    # Namespaces of earlier tests still being deleted make the operator try to re-create
    # their children (refused, 403): that is their cleanup, not this window's idleness.
    wait_for(lambda: not terminating(cluster), 180, "earlier namespaces deleted", 1)
    audit = cluster.audit()  # counts from here on, every namespace
    # A window of time is what this test measures: no condition can stand in for it.
    deadline = time.monotonic() + IDLE_WINDOW
    while time.monotonic() < deadline:
        writes = audit.operator_writes()
        assert writes == [], [f"{w.verb} {w.uri} -> {w.code}" for w in writes]
        time.sleep(1.0)
    assert audit.operator_writes() == []
    # The operator was there all along (its reads are in the same log): a silent log is not a
    # dead operator.
    assert operator.pod is not None and operator.pod.process.poll() is None


@pytest.mark.timeout(400)
def test_operator_killed_mid_reconcile(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    audit = cluster.audit()
    names = apply_many(cluster, namespace, 10, "crash")
    # Kill it as soon as it has written the first child: the rest are mid-reconcile.
    wait_for(
        lambda: any(e.verb == "patch" for e in audit.operator_writes()),
        60,
        "the operator's first write",
        every=0.02,
    )
    operator.kill(signal.SIGKILL)
    partial = children(cluster, namespace)
    operator.start()
    wait_for(lambda: all_ready(cluster, namespace, names), 180, "all Ready after restart", 1)
    assert partial != expected_children(names), "the kill came too late to test anything"
    assert children(cluster, namespace) == expected_children(names)


@pytest.mark.timeout(400)
def test_api_server_outage(
    cluster: Cluster, operator: Operator, namespace: str, every_call_authorized: AuditLog
) -> None:
    names = apply_many(cluster, namespace, 5, "outage")
    wait_for(lambda: all_ready(cluster, namespace, names), 120, "Ready before the outage", 1)
    stopped = datetime.datetime.now(datetime.UTC)
    subprocess.run([CLUSTER_SCRIPT, "stop", "kube-apiserver"], check=True, timeout=60)
    try:
        time.sleep(API_OUTAGE)  # the fault itself: the API server is gone this long
        assert operator.pod is not None and operator.pod.process.poll() is None
    finally:
        subprocess.run([CLUSTER_SCRIPT, "start", "kube-apiserver"], check=True, timeout=60)
    wait_for(
        lambda: cluster.kubectl("get", "--raw=/readyz", check=False).returncode == 0,
        60,
        "the API server back",
    )
    # A restarted kube-apiserver serves before its RBAC informers have synced and refuses
    # every request of a service account meanwhile (seen: the operator's first watches, 0.2 s
    # before "Caches are synced"); /readyz waits for that sync (informer-sync). Refusals from
    # here on still fail the test: a missing rule would refuse the watches kopf retries.
    every_call_authorized.excuse(
        stopped, datetime.datetime.now(datetime.UTC), "the API server's own start-up"
    )
    # Watches must have resumed: a change made now is seen and acted on.
    cluster.kubectl("scale", "deployment", f"{names[0]}-predictor", "-n", namespace, "--replicas=3")
    cluster.apply(isvc("after-outage", minReplicas=1), namespace=namespace)
    wait_for(
        lambda: (
            (cluster.get("deployment", f"{names[0]}-predictor", namespace) or {})
            .get("spec", {})
            .get("replicas")
            == 1
        ),
        30,
        "drift after the outage undone",
    )
    # The operator's part: the new InferenceService's children, at once.
    want = expected_children([*names, "after-outage"])
    wait_for(lambda: children(cluster, namespace) == want, 30, "the new one's children")
    # Ready also needs the controller-manager, the scheduler and kwok, which reconnect after
    # the restart on their own schedule (client-go backoff; kwok's node lease lapsed meanwhile):
    # a longer bound, for them, not for the operator.
    wait_ready(cluster, namespace, "after-outage", timeout=180)
    wait_for(lambda: all_ready(cluster, namespace, names), 180, "all Ready after the outage", 1)
    assert children(cluster, namespace) == want
