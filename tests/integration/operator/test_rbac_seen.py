"""O13, run: every (verb, resource) the operator sends in a full life cycle is one the chart's
ClusterRole grants, so least-privilege RBAC is proven by use, not only by reading the YAML.

The scenario touches every child kind (Deployment, Service, HPA, PDB, KEDA ScaledObject,
HTTPRoute), a canary, hand-made drift, an invalid spec (Events) and deletion. Requests are told
apart by the kubeconfig's token: the test's own client sends none.
"""

from __future__ import annotations

from collections.abc import Iterable

import kmock
import pytest

from tests.integration.operator.conftest import (
    DEPLOYMENTS,
    HPAS,
    PDBS,
    SCALEDOBJECTS,
    SERVICES,
    Cluster,
    OperatorFactory,
    isvc,
)
from tests.integration.operator.emulator import ISVC_RESOURCE
from tests.unit.chart.helpers import render
from tests.unit.chart.test_rbac import grants

HTTPROUTES = "gateway.networking.k8s.io/v1/httproutes"
OPERATOR_TOKEN = "Bearer kmock"  # tests/integration/operator/emulator.py:kubeconfig
VERBS = {
    kmock.action.FETCH: "get",
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.CREATE: "create",
}
Seen = set[tuple[str, str, str]]  # (apiGroup, resource[/subresource], verb)


def verb(request: kmock.Request) -> str:
    """The RBAC verb the API server would authorise ``request`` as."""
    if request.action == kmock.action.UPDATE:
        return "patch" if str(request.method.value).upper() == "PATCH" else "update"
    if request.action == kmock.action.DELETE:
        return "delete" if request.name else "deletecollection"
    assert request.action is not None, request.url
    return VERBS[request.action]


def seen_by_operator(requests: Iterable[kmock.Request]) -> Seen:
    """Resource requests sent with the operator's token (discovery URLs need no grant)."""
    seen: Seen = set()
    for request in requests:
        if request.headers.get("Authorization") != OPERATOR_TOKEN:
            continue
        if request.resource is None or request.resource.plural is None:
            continue  # /api, /apis/<group>/<version>: discovery
        resource = request.resource.plural
        if request.subresource:
            resource += f"/{request.subresource}"
        seen.add((request.resource.group or "", resource, verb(request)))
    return seen


@pytest.mark.gateway_api  # detected by the operator: HTTPRoutes are rendered
async def test_every_request_of_a_full_life_cycle_is_granted(
    cluster: Cluster, start_operator: OperatorFactory
) -> None:
    await start_operator(resync_seconds=1.0)
    body = isvc("iris", minReplicas=2, maxReplicas=4, canaryTrafficPercent=25)
    body["spec"]["modelfleet"] = {"canary": {"storageUri": "s3://models/iris-v2"}}
    await cluster.create(body)
    await cluster.create(isvc("bad", minReplicas=5, maxReplicas=2))  # InvalidSpec: an Event
    await cluster.eventually(
        lambda: cluster.get(PDBS, "iris-predictor") and cluster.get(HTTPROUTES, "iris"),
        what="PDB and HTTPRoute",
    )
    await cluster.make_ready("iris-predictor")
    await cluster.delete(SERVICES, "iris")  # drift
    await cluster.eventually(lambda: cluster.get(SERVICES, "iris"), what="Service restored")
    await cluster.patch(
        ISVC_RESOURCE,
        "iris",
        {"spec": {"predictor": {"canaryTrafficPercent": 100, "scaleMetric": "rps"}}},
    )
    await cluster.eventually(
        lambda: (
            cluster.get(SCALEDOBJECTS, "iris-predictor")
            and cluster.get(HPAS, "iris-predictor") is None
            and cluster.get(DEPLOYMENTS, "iris-predictor-canary") is None
        ),
        what="promoted, KEDA instead of HPA",
    )
    await cluster.delete(ISVC_RESOURCE, "bad")
    await cluster.eventually(lambda: cluster.get(ISVC_RESOURCE, "bad") is None, what="deleted")

    (role,) = render().of_kind("ClusterRole")
    granted = grants(role)
    seen = seen_by_operator(list(cluster.emulator))
    writes = {(g, r, v) for g, r, v in seen if v in {"create", "patch", "delete"}}
    # The scenario did exercise the operator: its writes reached every child kind.
    assert {r for _, r, _ in writes} >= {
        "deployments",
        "services",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
        "scaledobjects",
        "httproutes",
        "inferenceservices/status",
        "events",
    }, sorted(seen)
    denied = sorted((g, r, v) for g, r, v in seen if v not in granted.get((g, r), frozenset()))
    assert denied == [], f"requests the chart's ClusterRole would refuse: {denied}"
