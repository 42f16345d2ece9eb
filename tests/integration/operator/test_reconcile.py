"""The operator against the emulator, where it serves what the real control plane of
tests/e2e does not: no Gateway API at all. Create, update, drift, zero writes, the autoscaler
switch and the canary run on the real control plane (tests/e2e)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.operator.conftest import HPAS, SERVICES, Cluster, isvc
from tests.integration.operator.emulator import ISVC_RESOURCE

DEP = "iris-predictor"

HTTPROUTES = "gateway.networking.k8s.io/v1/httproutes"


@pytest.mark.parametrize(
    ("setting", "routed"),
    [
        pytest.param(None, False, id="no-gateway-api"),
        pytest.param(None, True, id="detected", marks=pytest.mark.gateway_api),
        pytest.param("false", False, id="forced-off", marks=pytest.mark.gateway_api),
    ],
)
async def test_httproute_only_where_the_gateway_api_is_served(
    cluster: Cluster,
    start_operator: Any,
    monkeypatch: pytest.MonkeyPatch,
    setting: str | None,
    routed: bool,
) -> None:
    if setting is not None:
        monkeypatch.setenv("MODELFLEET_OPERATOR_GATEWAY_API", setting)
    await start_operator()
    body = isvc("iris", minReplicas=2, maxReplicas=4, canaryTrafficPercent=25)
    body["spec"]["modelfleet"] = {"canary": {"storageUri": "s3://models/iris-v2"}}
    await cluster.create(body)
    await cluster.eventually(
        lambda: cluster.get(HPAS, f"{DEP}-canary") and cluster.get(SERVICES, "iris"),
        what="canary children",
    )
    await cluster.eventually(lambda: _handled_generation(cluster), what="status written")
    if routed:
        route = cluster.get(HTTPROUTES, "iris") or {}
        weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
        assert weights == {DEP: 75, f"{DEP}-canary": 25}
        assert cluster.names(SERVICES) == sorted(["iris", DEP, f"{DEP}-canary"])
    else:
        assert cluster.names(SERVICES) == ["iris"]  # no per-track Services either
        assert cluster.emulator.writes("httproutes") == []


def _handled_generation(cluster: Cluster) -> bool:
    body = cluster.get(ISVC_RESOURCE, "iris") or {}
    status = body.get("status") or {}
    return bool(status.get("observedGeneration") == body["metadata"].get("generation"))
