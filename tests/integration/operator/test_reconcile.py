"""The operator against the emulator: create, update, drift, zero writes when converged."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from tests.integration.operator.conftest import (
    DEPLOYMENTS,
    HPAS,
    NS,
    SCALEDOBJECTS,
    SERVICES,
    Cluster,
    isvc,
)
from tests.integration.operator.emulator import ISVC_RESOURCE

DEP = "iris-predictor"


def _owner_ok(obj: dict[str, Any], uid: str) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return (
        len(refs) == 1
        and refs[0]["uid"] == uid
        and refs[0]["kind"] == "InferenceService"
        and refs[0]["controller"] is True
        and refs[0]["blockOwnerDeletion"] is True
        and obj["metadata"]["namespace"] == NS
    )


def _image(cluster: Cluster, name: str = DEP) -> str | None:
    dep = cluster.get(DEPLOYMENTS, name)
    return dep["spec"]["template"]["spec"]["containers"][0]["image"] if dep else None


def _ready(cluster: Cluster, name: str, generation: int) -> bool:
    status = (cluster.get(ISVC_RESOURCE, name) or {}).get("status") or {}
    conds = {c["type"]: c for c in status.get("conditions") or []}
    ready = conds.get("Ready", {})
    return ready.get("status") == "True" and status.get("observedGeneration") == generation


async def _converged(cluster: Cluster, name: str = "iris", **predictor: Any) -> dict[str, Any]:
    await cluster.create(isvc(name, **predictor))
    await cluster.handled(name)
    dep = f"{name}-predictor"
    await cluster.eventually(lambda: cluster.get(HPAS, dep), what="children")
    await cluster.make_ready(dep)
    await cluster.eventually(lambda: _ready(cluster, name, 1), what="Ready")
    return cluster.get(ISVC_RESOURCE, name) or {}


@pytest.mark.usefixtures("operator")
async def test_create_makes_owned_children_and_ready_status(cluster: Cluster) -> None:
    created = await cluster.create(isvc("iris"))
    uid = created["metadata"]["uid"]
    await cluster.eventually(
        lambda: (
            cluster.get(DEPLOYMENTS, DEP)
            and cluster.get(SERVICES, "iris")
            and cluster.get(HPAS, DEP)
        ),
        what="Deployment, Service and HPA",
    )
    for resource, name in ((DEPLOYMENTS, DEP), (SERVICES, "iris"), (HPAS, DEP)):
        assert _owner_ok(cluster.get(resource, name) or {}, uid), resource
    assert not (cluster.get(ISVC_RESOURCE, "iris") or {})["metadata"].get("finalizers")
    await cluster.make_ready(DEP)
    await cluster.eventually(lambda: _ready(cluster, "iris", 1), what="Ready, observedGeneration 1")


# Spelled as users do, stored canonically by the API server (and the emulator): 1, 1Gi, 500m.
SPELLINGS = {"limits": {"cpu": "1000m", "memory": "1024Mi"}, "requests": {"cpu": "0.5"}}


@pytest.mark.parametrize("resources", [None, SPELLINGS], ids=["defaults", "spellings"])
async def test_converged_resource_makes_zero_writes(
    cluster: Cluster, start_operator: Any, resources: dict[str, Any] | None
) -> None:
    await start_operator(resync_seconds=0.5)  # several resyncs inside the window
    predictor: dict[str, Any] = {}
    if resources:
        model = {"modelFormat": {"name": "onnx"}, "storageUri": "s3://models/iris"}
        predictor["model"] = {**model, "resources": resources}
    await _converged(cluster, "iris", **predictor)
    if resources:
        stored = (cluster.get(DEPLOYMENTS, DEP) or {})["spec"]["template"]["spec"]
        assert stored["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    await asyncio.sleep(0.5)  # let the last status write's own events settle
    before = len(cluster.emulator.writes())
    versions = {
        n: (cluster.get(r, n) or {})["metadata"]["resourceVersion"]
        for r, n in ((DEPLOYMENTS, DEP), (SERVICES, "iris"), (HPAS, DEP))
    }
    await asyncio.sleep(2.5)  # the window itself: at least four resync passes
    assert cluster.emulator.writes()[before:] == [], cluster.log()
    after = {
        n: (cluster.get(r, n) or {})["metadata"]["resourceVersion"]
        for r, n in ((DEPLOYMENTS, DEP), (SERVICES, "iris"), (HPAS, DEP))
    }
    assert after == versions


@pytest.mark.usefixtures("operator")
async def test_spec_update_is_one_deployment_write(cluster: Cluster) -> None:
    await _converged(cluster)
    before = len(cluster.emulator.writes("deployments"))
    await cluster.patch(
        ISVC_RESOURCE,
        "iris",
        {"spec": {"predictor": {"model": {"storageUri": "s3://models/iris-v2"}}}},
    )
    await cluster.eventually(lambda: "iris-v2" in str(cluster.get(DEPLOYMENTS, DEP)), what="update")
    await cluster.make_ready(DEP)
    await cluster.eventually(lambda: _ready(cluster, "iris", 2), what="observedGeneration 2")
    writes = [w for w in cluster.emulator.writes("deployments")[before:] if w.subresource is None]
    assert len(writes) == 1, cluster.log()


@pytest.mark.usefixtures("operator")
async def test_deleted_child_is_recreated(cluster: Cluster) -> None:
    await _converged(cluster)
    for resource, name in ((DEPLOYMENTS, DEP), (SERVICES, "iris"), (HPAS, DEP)):
        await cluster.delete(resource, name)
        recreated = functools.partial(cluster.get, resource, name)
        await cluster.eventually(recreated, timeout=5, what=f"{resource} recreated")


@pytest.mark.usefixtures("operator")
async def test_edited_child_is_reverted(cluster: Cluster) -> None:
    await _converged(cluster)
    image = _image(cluster)
    dep = cluster.get(DEPLOYMENTS, DEP) or {}
    containers = dep["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = "evil:latest"
    await cluster.patch(
        DEPLOYMENTS, DEP, {"spec": {"template": {"spec": {"containers": containers}}}}
    )
    await cluster.eventually(lambda: _image(cluster) == image, timeout=5, what="image reverted")


@pytest.mark.usefixtures("operator")
async def test_replicas_left_to_the_autoscaler(cluster: Cluster) -> None:
    await _converged(cluster)
    await cluster.patch(DEPLOYMENTS, DEP, {"spec": {"replicas": 3}})  # as the HPA would
    await cluster.patch(ISVC_RESOURCE, "iris", {"spec": {"predictor": {"maxReplicas": 5}}})
    await cluster.eventually(
        lambda: (cluster.get(HPAS, DEP) or {}).get("spec", {}).get("maxReplicas") == 5,
        what="HPA maxReplicas 5",
    )
    assert (cluster.get(DEPLOYMENTS, DEP) or {})["spec"]["replicas"] == 3


@pytest.mark.usefixtures("operator")
async def test_canary_runs_two_deployments_with_the_split(cluster: Cluster) -> None:
    body = isvc("iris", minReplicas=4, maxReplicas=8, canaryTrafficPercent=25)
    body["spec"]["modelfleet"] = {"canary": {"storageUri": "s3://models/iris-v2"}}
    await cluster.create(body)
    canary = f"{DEP}-canary"
    await cluster.eventually(
        lambda: cluster.get(HPAS, canary) and cluster.get(HPAS, DEP), what="both autoscalers"
    )
    assert "iris-v2" in str(cluster.get(DEPLOYMENTS, canary))
    assert "iris-v2" not in str(cluster.get(DEPLOYMENTS, DEP))
    stable_hpa, canary_hpa = cluster.get(HPAS, DEP) or {}, cluster.get(HPAS, canary) or {}
    assert (stable_hpa["spec"]["minReplicas"], canary_hpa["spec"]["minReplicas"]) == (3, 1)
    assert (stable_hpa["spec"]["maxReplicas"], canary_hpa["spec"]["maxReplicas"]) == (6, 2)
    # Promotion: 100 % rolls the one Deployment to the canary's model and drops the canary.
    await cluster.patch(
        ISVC_RESOURCE, "iris", {"spec": {"predictor": {"canaryTrafficPercent": 100}}}
    )
    await cluster.eventually(lambda: cluster.get(DEPLOYMENTS, canary) is None, what="canary pruned")
    assert "iris-v2" in str(cluster.get(DEPLOYMENTS, DEP))


@pytest.mark.usefixtures("operator")
async def test_hpa_keda_switch_never_overlaps(cluster: Cluster) -> None:
    await _converged(cluster)
    await cluster.patch(ISVC_RESOURCE, "iris", {"spec": {"predictor": {"scaleMetric": "rps"}}})
    await cluster.eventually(lambda: cluster.get(SCALEDOBJECTS, DEP), what="ScaledObject")
    assert cluster.get(HPAS, DEP) is None
    await cluster.patch(ISVC_RESOURCE, "iris", {"spec": {"predictor": {"scaleMetric": "cpu"}}})
    await cluster.eventually(lambda: cluster.get(HPAS, DEP), what="HPA back")
    assert cluster.get(SCALEDOBJECTS, DEP) is None
    live: set[str] = set()
    for _, kind, plural, _ns, _name in cluster.emulator.timeline:
        if plural in ("horizontalpodautoscalers", "scaledobjects"):
            (live.add if kind == "ADDED" else live.discard)(plural)
            assert len(live) <= 1, cluster.emulator.timeline


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
