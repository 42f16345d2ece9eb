"""What the status reads of the predictor pods: how long the last cold start took, and why
pods that cannot start wait.

The operator watches the pods of its InferenceServices read-only (list and watch, by the
managed-by labels: ``handlers.py`` keeps a kopf index of :func:`slim` pods by InferenceService);
``status.build_status`` turns them into ``components.<track>.lastColdStartSeconds`` and, for a
pod the scheduler cannot place (a missing cache claim, say), the scheduler's own message in the
PredictorReady condition. Pure: no kopf, no Kubernetes client.

A cold start is measured from the runtime container's ``state.running.startedAt`` (the process
starts) to the pod's ``Ready`` condition's ``lastTransitionTime`` (the readiness probe passed:
a version downloaded, loaded and warmed up), both as the kubelet reports them, in whole seconds
(Kubernetes timestamps have no finer resolution).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from modelfleet_operator import labels
from modelfleet_operator.kinds import KindRef
from modelfleet_operator.render.deployment import CONTAINER

POD = KindRef("v1", "Pod", "pods")
Pod = Mapping[str, Any]


def slim(pod: Pod) -> dict[str, Any]:
    """The part of a pod the status reads (name, track, deletion, the Ready and PodScheduled
    conditions, the runtime container's state): what the operator keeps in memory per pod."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    conditions = [
        c for c in status.get("conditions") or [] if c.get("type") in ("Ready", "PodScheduled")
    ]
    containers = [c for c in status.get("containerStatuses") or [] if c.get("name") == CONTAINER]
    out_meta = {
        "name": meta.get("name"),
        "labels": {labels.TRACK: (meta.get("labels") or {}).get(labels.TRACK)},
    }
    if meta.get("deletionTimestamp"):
        out_meta["deletionTimestamp"] = meta["deletionTimestamp"]
    return {
        "metadata": out_meta,
        "status": {"conditions": conditions, "containerStatuses": containers},
    }


def of_track(pods: Iterable[Pod], track: str) -> list[Pod]:
    """The pods of one track (the stable or the canary Deployment)."""
    return [p for p in pods if _labels(p).get(labels.TRACK) == track]


def _labels(pod: Pod) -> Mapping[str, str]:
    return dict((pod.get("metadata") or {}).get("labels") or {})


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _condition(pod: Pod, ctype: str) -> Mapping[str, Any]:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return {}


def cold_start(pod: Pod) -> tuple[datetime, int] | None:
    """(when it became ready, seconds from the runtime's start to ready) of a ready pod; None
    for a pod that is not ready, is being deleted, or lacks either time."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    ready = _condition(pod, "Ready")
    if ready.get("status") != "True":
        return None
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    runtime: Mapping[str, Any] = next((c for c in statuses if c.get("name") == CONTAINER), {})
    started = _time(((runtime.get("state") or {}).get("running") or {}).get("startedAt"))
    ready_at = _time(ready.get("lastTransitionTime"))
    if started is None or ready_at is None:
        return None
    return ready_at, max(0, round((ready_at - started).total_seconds()))


def last_cold_start_seconds(pods: Iterable[Pod]) -> int | None:
    """The cold start of the pod that became ready last; None when no pod is ready."""
    starts = [s for s in (cold_start(p) for p in pods) if s is not None]
    return max(starts)[1] if starts else None


def unschedulable(pods: Iterable[Pod]) -> str | None:
    """'pod NAME cannot be scheduled: MESSAGE' for the first pod (by name) the scheduler
    refused, with the scheduler's message (e.g. a PersistentVolumeClaim not found); None if
    none."""
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        scheduled = _condition(pod, "PodScheduled")
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            name = (pod.get("metadata") or {}).get("name")
            why = scheduled.get("message") or "no reason given"
            return f"pod {name} cannot be scheduled: {why}"
    return None
