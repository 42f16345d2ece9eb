"""Injected API faults and hung requests, and a restart while a request hangs (O2, O4, O5):
what the real control plane of tests/e2e cannot be made to do on demand. Invalid specs and
deletion run there (tests/e2e/test_invalid.py, test_lifecycle.py)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.operator.conftest import (
    DEPLOYMENTS,
    HPAS,
    SERVICES,
    Cluster,
    isvc,
)
from tests.integration.operator.emulator import ISVC_RESOURCE, Fault
from tests.integration.operator.test_observability import free_port

DEP = "iris-predictor"


def _condition(cluster: Cluster, name: str) -> dict[str, Any]:
    status = (cluster.get(ISVC_RESOURCE, name) or {}).get("status") or {}
    ready: dict[str, Any] = {c["type"]: c for c in status.get("conditions") or []}.get("Ready", {})
    return ready


def _gone(cluster: Cluster, name: str) -> bool:
    return cluster.get(ISVC_RESOURCE, name) is None


def _children(cluster: Cluster, name: str) -> bool:
    dep = f"{name}-predictor"
    return bool(
        cluster.get(DEPLOYMENTS, dep) and cluster.get(SERVICES, name) and cluster.get(HPAS, dep)
    )


@pytest.mark.usefixtures("operator")
async def test_conflicts_and_server_errors_converge(cluster: Cluster) -> None:
    cluster.emulator.faults += [
        Fault("PATCH", "deployments", status=409, count=2),
        Fault("PATCH", "services", status=500, count=2),
    ]
    await cluster.create(isvc("iris"))
    await cluster.eventually(lambda: _children(cluster, "iris"), timeout=15, what="converged")
    assert all(f.hits == f.count for f in cluster.emulator.faults)


@pytest.mark.usefixtures("operator")
async def test_throttling_honours_retry_after(cluster: Cluster) -> None:
    cluster.emulator.faults.append(
        Fault("PATCH", "deployments", status=429, count=1, headers={"Retry-After": "2"})
    )
    await cluster.create(isvc("iris"))
    await cluster.eventually(lambda: _children(cluster, "iris"), timeout=15, what="converged")
    attempts = [r for r in cluster.emulator.writes("deployments") if r.subresource is None]
    assert len(attempts) >= 2
    # The retry came no sooner than Retry-After: the timeline records the creation.
    created = [t for t, kind, plural, *_ in cluster.emulator.timeline if plural == "deployments"]
    first_isvc = [
        t for t, kind, plural, *_ in cluster.emulator.timeline if plural == "inferenceservices"
    ]
    assert created[0] - first_isvc[0] >= 2.0


async def test_a_hung_request_times_out_and_spares_others(
    cluster: Cluster, start_operator: Any
) -> None:
    """O5's delayed responses: a Deployment apply held far beyond ``request_timeout`` counts as
    a temporary error; the resource converges on the retry and another one meanwhile, both
    while the held request is still unanswered, and the health endpoint answers 200 all along."""
    port = free_port()
    await start_operator(endpoint=f"http://127.0.0.1:{port}/healthz", request_timeout=1.0)
    hold = Fault("PATCH", "deployments", count=1, delay=60)
    cluster.emulator.faults.append(hold)
    await cluster.create(isvc("iris"))
    await cluster.eventually(lambda: hold.hits, what="the Deployment apply held")
    await cluster.create(isvc("other"))
    await cluster.eventually(lambda: _children(cluster, "other"), timeout=15, what="other")
    # 8 s: a 1 s timeout and a 2 s backoff with room for a slow machine; without the timeout
    # the retry could not start before the default 10 s.
    await cluster.eventually(lambda: _children(cluster, "iris"), timeout=8, what="iris retried")
    assert hold.hits == 1  # one request held; the retry went through
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        async with http.get("/healthz") as health:
            assert health.status == 200


async def test_restart_mid_reconcile_converges_without_duplicates(
    cluster: Cluster, start_operator: Any
) -> None:
    first = await start_operator()
    hold = Fault("PATCH", "services", count=1, delay=30)  # the Service apply never returns
    cluster.emulator.faults.append(hold)
    await cluster.create(isvc("iris"))
    await cluster.eventually(
        lambda: cluster.get(DEPLOYMENTS, DEP) and hold.hits,
        what="Deployment applied, Service in flight",
    )
    await first.stop()
    assert cluster.get(SERVICES, "iris") is None
    await start_operator()
    await cluster.eventually(lambda: _children(cluster, "iris"), timeout=15, what="converged")
    assert cluster.names(DEPLOYMENTS) == [DEP]
    assert cluster.names(SERVICES) == ["iris"]
    assert cluster.names(HPAS) == [DEP]
