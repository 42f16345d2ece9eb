"""Cold starts and the model cache on the real control plane (issue 13, parts 2 and 5).

* ``status.components.stable.lastColdStartSeconds`` is what the predictor pods' own status
  says: the runtime container's ``startedAt`` to the pod's Ready transition, of the pod that
  became ready last. kwok makes pods Ready at once, so the figure is small, but it is read
  from the pods the real API server holds, through the operator's own (least-privilege) watch.
* A cache claim that does not exist leaves the pods Pending, and the InferenceService's
  status says why in the scheduler's words; once the claim exists the pods start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.e2e.conftest import isvc, wait_ready
from tests.e2e.kube import Cluster, Manifest, wait_for
from tests.e2e.test_examples import bound_claim

pytestmark = pytest.mark.timeout(300)
ISVC_LABEL = "serving.modelfleet.dev/inferenceservice"


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def expected_cold_start(pods: list[Manifest]) -> int | None:
    """From the pods' status: (Ready's lastTransitionTime - runtime's startedAt) of the pod
    that became ready last."""
    starts: list[tuple[datetime, int]] = []
    for pod in pods:
        ready: Manifest = next(
            (c for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"), {}
        )
        if ready.get("status") != "True":
            continue
        (runtime,) = [c for c in pod["status"]["containerStatuses"] if c["name"] == "runtime"]
        started = _time(runtime["state"]["running"]["startedAt"])
        ready_at = _time(ready["lastTransitionTime"])
        starts.append((ready_at, max(0, round((ready_at - started).total_seconds()))))
    return max(starts)[1] if starts else None


def _stable(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found = cluster.get("inferenceservice", name, namespace) or {}
    return dict(((found.get("status") or {}).get("components") or {}).get("stable") or {})


def test_last_cold_start_comes_from_the_pods(cluster: Cluster, namespace: str) -> None:
    cluster.apply(isvc("iris", minReplicas=2), namespace=namespace)
    wait_ready(cluster, namespace, "iris")
    pods = cluster.list("pods", namespace, f"{ISVC_LABEL}=iris")
    assert len(pods) == 2
    expected = expected_cold_start(pods)
    assert expected is not None
    shown = wait_for(
        lambda: (
            (s := _stable(cluster, namespace, "iris")).get("lastColdStartSeconds") == expected and s
        ),
        30,
        f"lastColdStartSeconds {expected}",
    )
    assert isinstance(shown["lastColdStartSeconds"], int)

    # A new pod (one deleted, its ReplicaSet makes another): the figure follows the newest.
    cluster.kubectl("delete", "pod", pods[0]["metadata"]["name"], "-n", namespace, "--wait")

    def ready_pods() -> list[Manifest]:
        pods = cluster.list("pods", namespace, f"{ISVC_LABEL}=iris")
        return [p for p in pods if expected_cold_start([p]) is not None]

    wait_for(lambda: len(ready_pods()) == 2, 60, "two ready pods again")
    now = ready_pods()
    assert {p["metadata"]["name"] for p in now} != {p["metadata"]["name"] for p in pods}
    again = expected_cold_start(now)
    wait_for(
        lambda: _stable(cluster, namespace, "iris").get("lastColdStartSeconds") == again,
        30,
        f"lastColdStartSeconds {again} after the new pod",
    )


def test_a_missing_cache_claim_is_reported_then_recovers(cluster: Cluster, namespace: str) -> None:
    manifest = isvc("cached", minReplicas=1)
    manifest["spec"]["modelfleet"] = {"modelCache": {"claimName": "absent-cache"}}
    cluster.apply(manifest, namespace=namespace)

    def refused() -> dict[str, Any] | None:
        found = cluster.get("inferenceservice", "cached", namespace) or {}
        for cond in (found.get("status") or {}).get("conditions") or []:
            if cond["type"] == "PredictorReady" and cond["reason"] == "PodUnschedulable":
                return dict(cond)
        return None

    cond = wait_for(refused, 60, "PredictorReady reason PodUnschedulable")
    assert cond["status"] == "False"
    assert 'persistentvolumeclaim "absent-cache" not found' in cond["message"], cond
    pods = cluster.list("pods", namespace, f"{ISVC_LABEL}=cached")
    assert pods and all(p["status"]["phase"] == "Pending" for p in pods)
    volumes = pods[0]["spec"]["volumes"]
    claim = {"claimName": "absent-cache"}
    assert {"name": "model-cache", "persistentVolumeClaim": claim} in volumes

    made = bound_claim(cluster, namespace, "absent-cache", "ReadWriteMany")
    cluster.apply(made, namespace=namespace)
    found = wait_ready(cluster, namespace, "cached", timeout=120)
    stable = found["status"]["components"]["stable"]
    assert "lastColdStartSeconds" in stable or wait_for(
        lambda: "lastColdStartSeconds" in _stable(cluster, namespace, "cached"), 30, "a figure"
    )
