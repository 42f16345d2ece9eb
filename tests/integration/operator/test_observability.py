"""The operator's one HTTP port (health and Prometheus metrics) and its logging settings.

The chart probes ``/healthz`` and scrapes ``/metrics`` on the same port (8080): the operator
started with an endpoint serves both, and its series count reconciles, writes and Ready states.
"""

from __future__ import annotations

import socket

import aiohttp
import pydantic
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelfleet_operator.config import OperatorConfig
from tests.integration.operator.conftest import Cluster, OperatorFactory, isvc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


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
            samples = _samples(await scrape.text())
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
