"""The Service in front of every predictor pod and, with the Gateway API, per-track Services
and an HTTPRoute with exact canary weights.

Called by ``render.render``; pure.
"""

from __future__ import annotations

from typing import Any

from modelfleet_operator import labels
from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import ParsedService
from modelfleet_operator.render import tls
from modelfleet_operator.render.plan import Track
from modelfleet_operator.render.runtime_env import GRPC_PORT


def _service(svc: ParsedService, name: str, track: str | None) -> dict[str, Any]:
    return tls.secure_service(svc, _plain_service(svc, name, track))


def _plain_service(svc: ParsedService, name: str, track: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": svc.namespace,
            "labels": labels.child_labels(svc.name, track=track),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": labels.pod_selector(svc.name, track),
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
            ],
        },
    }


def service(svc: ParsedService) -> dict[str, Any]:
    """``<name>``: port 80 to the pods' 8080 (HTTP) and 8081 to their 8081 (gRPC), over both
    tracks (traffic split by pod counts); with TLS, 443 and 8081 (``tls.secure_service``)."""
    return _service(svc, svc.name, None)


def track_services(
    svc: ParsedService, tracks: list[Track], config: OperatorConfig
) -> list[dict[str, Any]]:
    """One Service per track, the HTTPRoute's backends (only with the Gateway API)."""
    if not config.gateway_api:
        return []
    return [_service(svc, t.deployment, t.track) for t in tracks]


def http_route(
    svc: ParsedService, tracks: list[Track], config: OperatorConfig
) -> list[dict[str, Any]]:
    """An HTTPRoute splitting traffic by exact weights (only with the Gateway API)."""
    if not config.gateway_api:
        return []
    parent: dict[str, Any] = {"name": config.gateway_name}
    if config.gateway_namespace:
        parent["namespace"] = config.gateway_namespace
    port = tls.service_http_port(svc)
    backends = [{"name": t.deployment, "port": port, "weight": t.percent} for t in tracks]
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {
                "name": svc.name,
                "namespace": svc.namespace,
                "labels": labels.child_labels(svc.name),
            },
            "spec": {"parentRefs": [parent], "rules": [{"backendRefs": backends}]},
        }
    ]
