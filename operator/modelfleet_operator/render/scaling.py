"""Autoscalers (an HPA or a KEDA ScaledObject, never both) and the PodDisruptionBudget.

Called by ``render.render``; pure.
"""

from __future__ import annotations

from typing import Any

from modelfleet_operator import labels
from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import ParsedService
from modelfleet_operator.render.plan import Track


def scale_target(svc: ParsedService, config: OperatorConfig) -> int:
    """scaleTarget, or the operator's default for the metric."""
    spec = svc.spec
    return spec.predictor.scale_target or config.default_scale_target[spec.scale_metric]


def _meta(svc: ParsedService, track: Track) -> dict[str, Any]:
    return {
        "name": track.deployment,
        "namespace": svc.namespace,
        "labels": labels.child_labels(svc.name, track=track.track),
    }


def _target_ref(track: Track) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": track.deployment}


def hpa(svc: ParsedService, track: Track, config: OperatorConfig) -> dict[str, Any]:
    """autoscaling/v2 HPA on CPU or memory utilisation (% of requests)."""
    metric = svc.spec.scale_metric
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(svc, track),
        "spec": {
            "scaleTargetRef": _target_ref(track),
            "minReplicas": max(track.min_replicas, 1),
            "maxReplicas": track.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": metric,
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scale_target(svc, config),
                        },
                    },
                }
            ],
        },
    }


def scaled_object(svc: ParsedService, track: Track, config: OperatorConfig) -> dict[str, Any]:
    """KEDA ScaledObject with a Prometheus trigger on the runtime's own metrics."""
    template = config.rps_query if svc.spec.scale_metric == "rps" else config.concurrency_query
    query = template.format(namespace=svc.namespace, name=svc.name, deployment=track.deployment)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(svc, track),
        "spec": {
            "scaleTargetRef": _target_ref(track),
            "minReplicaCount": track.min_replicas,
            "maxReplicaCount": track.max_replicas,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": config.prometheus_url,
                        "query": query,
                        "threshold": str(scale_target(svc, config)),
                    },
                }
            ],
        },
    }


def autoscalers(
    svc: ParsedService, tracks: list[Track], config: OperatorConfig
) -> list[dict[str, Any]]:
    """One autoscaler per track, all of the one kind the spec asks for (or none)."""
    kind = svc.spec.autoscaler
    if kind is None:
        return []
    build = hpa if kind == "hpa" else scaled_object
    return [build(svc, track, config) for track in tracks]


def pdb(svc: ParsedService) -> list[dict[str, Any]]:
    """A PDB (at most one predictor pod down at a time) when more than one replica may run."""
    if svc.spec.max_replicas <= 1:
        return []
    return [
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {
                "name": f"{svc.name}-predictor",
                "namespace": svc.namespace,
                "labels": labels.child_labels(svc.name),
            },
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": labels.pod_selector(svc.name)},
            },
        }
    ]
