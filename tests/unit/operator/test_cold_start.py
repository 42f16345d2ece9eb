"""The last cold start and the scheduler's reason in the status, from crafted pod objects
(issue 13, part 5): container startedAt to the pod's Ready transition, of the pod that became
ready last, per track; kept while no pod is ready; a pod the scheduler refuses is named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelfleet_operator import labels
from modelfleet_operator.parse import parse
from modelfleet_operator.predictor_pods import cold_start, last_cold_start_seconds, slim
from modelfleet_operator.status import build_status
from tests.unit.operator.helpers import isvc, predictor

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def pod(
    name: str,
    started: str | None = "2026-12-01T08:00:00Z",
    ready: str | None = "2026-12-01T08:00:42Z",
    track: str = "stable",
    **extra: Any,
) -> dict[str, Any]:
    """A predictor pod as the API server returns it, trimmed to what matters plus noise."""
    conditions: list[dict[str, Any]] = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-01T07:59:58Z"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-01T07:59:59Z"},
    ]
    if ready is not None:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": ready})
    else:
        conditions.append(
            {"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-01T08:00:00Z"}
        )
    running = {"running": {"startedAt": started}} if started else {"waiting": {"reason": "x"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels.child_labels("iris", track=track) | {"pod-template-hash": "abc"},
            **extra,
        },
        "spec": {"containers": [{"name": "runtime", "image": "runtime:1"}]},
        "status": {
            "phase": "Running",
            "conditions": conditions,
            "containerStatuses": [
                {"name": "sidecar", "state": {"running": {"startedAt": "2026-12-01T07:00:00Z"}}},
                {"name": "runtime", "ready": ready is not None, "state": running},
            ],
        },
    }


def test_seconds_from_container_start_to_ready() -> None:
    assert cold_start(pod("a")) == (datetime(2026, 12, 1, 8, 0, 42, tzinfo=UTC), 42)
    # The runtime container's start counts, not another container's (the sidecar's is 1 h earlier).
    assert last_cold_start_seconds([pod("a")]) == 42


def test_not_ready_deleted_or_unknown_pods_have_no_cold_start() -> None:
    assert cold_start(pod("a", ready=None)) is None
    assert cold_start(pod("b", started=None)) is None
    assert cold_start(pod("c", deletionTimestamp="2026-12-01T08:05:00Z")) is None
    assert cold_start(pod("d", started="garbage")) is None
    assert last_cold_start_seconds([]) is None


def test_the_pod_that_became_ready_last_wins() -> None:
    pods = [
        pod("old", "2026-12-01T07:00:00Z", "2026-12-01T07:02:00Z"),  # 120 s, an hour ago
        pod("new", "2026-12-01T08:30:00Z", "2026-12-01T08:30:07Z"),  # 7 s, the newest
        pod("mid", "2026-12-01T08:00:00Z", "2026-12-01T08:00:30Z"),
    ]
    assert last_cold_start_seconds(pods) == 7
    assert last_cold_start_seconds([slim(p) for p in pods]) == 7


def test_a_clock_skew_never_gives_a_negative_figure() -> None:
    assert last_cold_start_seconds([pod("a", "2026-12-01T08:00:05Z", "2026-12-01T08:00:04Z")]) == 0


def test_slim_keeps_only_what_the_status_reads() -> None:
    slimmed = slim(pod("a"))
    assert slimmed["metadata"] == {"name": "a", "labels": {labels.TRACK: "stable"}}
    assert [c["type"] for c in slimmed["status"]["conditions"]] == ["PodScheduled", "Ready"]
    assert [c["name"] for c in slimmed["status"]["containerStatuses"]] == ["runtime"]
    assert cold_start(slimmed) == cold_start(pod("a"))


def _ready_deployment(name: str = "iris-predictor", replicas: int = 2) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "generation": 1},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }


def test_status_shows_the_figure_per_track() -> None:
    spec = predictor(minReplicas=2, canaryTrafficPercent=50)
    spec["modelfleet"] = {"canary": {"storageUri": "s3://models/iris-v2"}}
    svc = parse(isvc(spec))
    deps = [_ready_deployment(), _ready_deployment("iris-predictor-canary", 1)]
    pods = [
        pod("s1", "2026-12-01T08:00:00Z", "2026-12-01T08:00:12Z"),
        pod("c1", "2026-12-01T08:10:00Z", "2026-12-01T08:10:03Z", track="canary"),
    ]
    status = build_status(svc, deps, None, NOW, pods=pods)
    assert status["components"]["stable"]["lastColdStartSeconds"] == 12
    assert status["components"]["canary"]["lastColdStartSeconds"] == 3


def test_status_keeps_the_last_figure_while_no_pod_is_ready() -> None:
    svc = parse(isvc(predictor(minReplicas=2)))
    first = build_status(svc, [_ready_deployment()], None, NOW, pods=[pod("a")])
    assert first["components"]["stable"]["lastColdStartSeconds"] == 42
    later = build_status(svc, [_ready_deployment()], first, NOW, pods=[pod("b", ready=None)])
    assert later["components"]["stable"]["lastColdStartSeconds"] == 42
    never = build_status(svc, [_ready_deployment()], None, NOW, pods=[])
    assert "lastColdStartSeconds" not in never["components"]["stable"]


def _pending(name: str, message: str) -> dict[str, Any]:
    out = pod(name, started=None, ready=None)
    out["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastTransitionTime": "2026-12-01T08:00:00Z",
            }
        ],
    }
    return out


def test_a_pod_the_scheduler_refuses_is_named_with_its_reason() -> None:
    svc = parse(isvc(predictor(minReplicas=1)))
    dep = _ready_deployment(replicas=1)
    dep["status"].update(readyReplicas=0, conditions=[{"type": "Available", "status": "False"}])
    message = '0/1 nodes are available: persistentvolumeclaim "cache" not found.'
    status = build_status(svc, [dep], None, NOW, pods=[slim(_pending("iris-predictor-x", message))])
    (cond,) = [c for c in status["conditions"] if c["type"] == "PredictorReady"]
    assert cond["status"] == "False" and cond["reason"] == "PodUnschedulable"
    assert "pod iris-predictor-x cannot be scheduled" in cond["message"]
    assert 'persistentvolumeclaim "cache" not found' in cond["message"]
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready["reason"] == "PodUnschedulable" and "cache" in ready["message"]
    # A ready Deployment is not blamed on a pod that waits (a surge pod during a rollout).
    dep = _ready_deployment(replicas=1)
    calm = build_status(svc, [dep], None, NOW, pods=[_pending("p", message)])
    assert all(c["status"] == "True" for c in calm["conditions"])
