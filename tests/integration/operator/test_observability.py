"""The operator's one HTTP port (health and Prometheus metrics) and its logging settings.

The chart probes ``/healthz`` and scrapes ``/metrics`` on the same port (8080): the operator
started with an endpoint serves both, and its series count reconciles, writes and Ready states.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pydantic
import pytest

from modelfleet_operator.config import OperatorConfig
from tests.helpers.prometheus import samples as parse_samples
from tests.integration.operator.conftest import NS, Cluster, OperatorFactory, isvc
from tests.integration.operator.emulator import ISVC_RESOURCE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_health_and_metrics_share_the_port(
    cluster: Cluster, start_operator: OperatorFactory
) -> None:
    port = free_port()
    await start_operator(endpoint=f"http://127.0.0.1:{port}/healthz")
    await cluster.create(isvc("observed"))
    await cluster.handled("observed")
    await cluster.eventually(
        lambda: (
            (cluster.get("serving.modelfleet.dev/v1alpha1/inferenceservices", "observed") or {})
            .get("status", {})
            .get("observedGeneration")
        ),
        what="status written",
    )
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        async with http.get("/healthz") as health:
            assert health.status == 200
        async with http.get("/metrics") as scrape:
            assert scrape.status == 200
            assert scrape.headers["Content-Type"].startswith("text/plain")
            samples = parse_samples(await scrape.text())
    assert samples[("modelfleet_operator_reconciles_total", (("result", "changed"),))] >= 1
    applied = (("kind", "Deployment"), ("verb", "apply"))
    assert samples[("modelfleet_operator_writes_total", applied)] >= 1
    assert (
        samples[
            ("modelfleet_operator_writes_total", (("kind", "InferenceService"), ("verb", "status")))
        ]
        >= 1
    )
    assert samples[("modelfleet_operator_reconcile_duration_seconds_count", ())] >= 1
    not_ready = samples[("modelfleet_operator_inferenceservices", (("ready", "False"),))]
    unknown = samples[("modelfleet_operator_inferenceservices", (("ready", "Unknown"),))]
    assert not_ready + unknown == 1  # no pods in the emulator: the one service is not ready


def test_log_settings_from_the_chart_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELFLEET_OPERATOR_LOG_LEVEL", "debug")
    monkeypatch.setenv("MODELFLEET_OPERATOR_LOG_FORMAT", "text")
    config = OperatorConfig()
    assert (config.log_level, config.log_format) == ("DEBUG", "text")
    monkeypatch.setenv("MODELFLEET_OPERATOR_LOG_FORMAT", "xml")
    with pytest.raises(pydantic.ValidationError):
        OperatorConfig()


async def test_each_resource_has_one_ready_series_with_its_reason(
    cluster: Cluster, start_operator: OperatorFactory
) -> None:
    """The per-resource series the alert rules read (ModelFleetInvalidSpec,
    ModelFleetReplicasNotReady): one per InferenceService, the Ready condition's status and
    reason as labels, following a spec that turns valid and a resource that is deleted."""
    port = free_port()
    await start_operator(endpoint=f"http://127.0.0.1:{port}/healthz")

    async def series(name: str) -> dict[tuple[str, str], float]:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.get("/metrics") as scrape:
                text = await scrape.text()
        found = {}
        for (metric, labels), value in parse_samples(text).items():
            label = dict(labels)
            if metric == "modelfleet_operator_inferenceservice_ready":
                if label["inferenceservice"] == name and label["namespace"] == NS:
                    found[(label["ready"], label["reason"])] = value
        return found

    async def settles(name: str, expected: dict[tuple[str, str], float]) -> None:
        for _ in range(200):
            if await series(name) == expected:
                return
            await asyncio.sleep(0.05)  # yields to the emulator, which serves from this loop
        assert await series(name) == expected

    await cluster.create(isvc("typo", minReplicas=3, maxReplicas=1))
    await settles("typo", {("False", "InvalidSpec"): 1})
    await cluster.patch(ISVC_RESOURCE, "typo", {"spec": {"predictor": {"minReplicas": 1}}})
    await settles("typo", {("False", "RolloutInProgress"): 1})
    await cluster.delete(ISVC_RESOURCE, "typo")
    await settles("typo", {})
