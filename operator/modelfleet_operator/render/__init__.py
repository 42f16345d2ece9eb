"""``render(svc, config)``: the whole set of child objects of one InferenceService.

Pure (no I/O, no clock, no randomness) and deterministic in order. Children carry labels and
a namespace but no ownerReferences: the live half adds those with ``kopf.adopt``. Called by
the live half's reconcile (``reconcile.py``) and by ``modelfleet render`` (``cli.py``).
"""

from __future__ import annotations

from typing import Any

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.kinds import KindRef
from modelfleet_operator.parse import ParsedService
from modelfleet_operator.render.deployment import deployment
from modelfleet_operator.render.network import http_route, service, track_services
from modelfleet_operator.render.plan import Track, deployment_name, plan, split_replicas
from modelfleet_operator.render.scaling import autoscalers, pdb

__all__ = [
    "Track",
    "deployment_name",
    "managed_kinds",
    "plan",
    "render",
    "split_replicas",
]


def managed_kinds() -> list[KindRef]:
    """Every child kind ``render`` can produce, in apply order: what the live half watches
    and prunes (children of these kinds that the latest render no longer contains) and what
    the chart's RBAC must allow."""
    return [
        KindRef("apps/v1", "Deployment", "deployments"),
        KindRef("v1", "Service", "services"),
        KindRef("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        KindRef("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
        KindRef("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        KindRef("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
    ]


def render(svc: ParsedService, config: OperatorConfig) -> list[dict[str, Any]]:
    """Every child object, in apply order: Deployments, Services, autoscalers, PDB, route."""
    tracks = plan(svc)
    return [
        *(deployment(svc, t, config) for t in tracks),
        service(svc),
        *track_services(svc, tracks, config),
        *autoscalers(svc, tracks, config),
        *pdb(svc),
        *http_route(svc, tracks, config),
    ]
