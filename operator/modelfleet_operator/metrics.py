"""The operator's Prometheus metrics and its one HTTP port: ``/healthz`` and ``/metrics``.

The chart (``charts/modelfleet``) gives the operator one container port, 8080 (``http``), and
points both the liveness/readiness probes (``/healthz``) and the metrics Service and
ServiceMonitor (``/metrics``) at it. kopf's own liveness server cannot serve a second path, so
``modelfleet operator --liveness URL`` starts this server on URL's host and port instead: the
health path answers 200 once the operator has started (from the operator's own event loop, so a
stuck loop fails the probe, as with kopf's), and ``/metrics`` serves :class:`OperatorMetrics`.

The metrics live on their own ``CollectorRegistry`` (never the global one), built in ``main``
and kept in kopf's memo. :class:`CountingApplier` counts every write by kind and verb.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp.web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelfleet_operator.kinds import KindRef
from modelfleet_operator.kube import Applier, Manifest
from modelfleet_operator.status import SecretSummary

RESULTS = ("unchanged", "changed", "invalid", "error")
"""Values of the ``result`` label of ``modelfleet_operator_reconciles_total``."""


class OperatorMetrics:
    """Every series the operator exports, on the registry it is given (or a new one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.reconciles = Counter(
            "modelfleet_operator_reconciles",
            "Reconciles of InferenceServices, by result: unchanged (no write), changed, "
            "invalid (spec rejected), error (API error after retries).",
            ["result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "modelfleet_operator_reconcile_duration_seconds",
            "Wall time of one reconcile (reads, writes and status).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.writes = Counter(
            "modelfleet_operator_writes",
            "Write requests sent to the API server, by kind and verb (apply, delete, status).",
            ["kind", "verb"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "modelfleet_operator_inferenceservices",
            "InferenceServices seen by this operator, by status of their Ready condition.",
            ["ready"],
            registry=self.registry,
        )
        self.condition = Gauge(
            "modelfleet_operator_inferenceservice_ready",
            "1 per InferenceService, labelled with the status and reason of its Ready "
            "condition (namespace is the resource's: the chart's ServiceMonitor honours it).",
            ["namespace", "inferenceservice", "ready", "reason"],
            registry=self.registry,
        )
        for result in RESULTS:
            self.reconciles.labels(result=result)
        self._ready_of: dict[tuple[str, str], tuple[str, str]] = {}

    def observe(self, result: str, started: float) -> None:
        """Count one reconcile that began at ``started`` (``time.monotonic()``)."""
        self.reconciles.labels(result=result).inc()
        self.duration.observe(time.monotonic() - started)

    def set_ready(self, namespace: str, name: str, ready: str | None, reason: str = "") -> None:
        """Record the Ready status and reason of one resource (None: it is gone)."""
        key = (namespace, name)
        old = self._ready_of.pop(key, None)
        if old is not None:
            self.condition.remove(namespace, name, *old)
        if ready is not None:
            self._ready_of[key] = (ready, reason)
            self.condition.labels(namespace, name, ready, reason).set(1)
        counts = dict.fromkeys(("True", "False", "Unknown"), 0)
        for value, _ in self._ready_of.values():
            counts[value] = counts.get(value, 0) + 1
        for value, count in counts.items():
            self.ready.labels(ready=value).set(count)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class CountingApplier:
    """An :class:`Applier` that counts the writes of the one it wraps."""

    def __init__(self, inner: Applier, metrics: OperatorMetrics) -> None:
        self.inner = inner
        self._writes = metrics.writes

    async def apply(self, ref: KindRef, manifest: Manifest) -> Manifest:
        self._writes.labels(kind=ref.kind, verb="apply").inc()
        return await self.inner.apply(ref, manifest)

    async def delete(self, ref: KindRef, namespace: str, name: str) -> None:
        self._writes.labels(kind=ref.kind, verb="delete").inc()
        await self.inner.delete(ref, namespace, name)

    async def list(
        self, ref: KindRef, namespace: str | None, labels: Mapping[str, str]
    ) -> list[Manifest]:
        return await self.inner.list(ref, namespace, labels)

    async def get(self, ref: KindRef, namespace: str, name: str) -> Manifest | None:
        return await self.inner.get(ref, namespace, name)

    async def patch_status(self, ref: KindRef, namespace: str, name: str, status: Manifest) -> None:
        self._writes.labels(kind=ref.kind, verb="status").inc()
        await self.inner.patch_status(ref, namespace, name, status)

    async def secret_summary(self, namespace: str, name: str) -> SecretSummary | None:
        return await self.inner.secret_summary(namespace, name)


async def serve(endpoint: str, metrics: OperatorMetrics) -> aiohttp.web.AppRunner:
    """Serve the health path of ``endpoint`` (``http://host:port/path``) and ``/metrics``."""
    url = urlsplit(endpoint)
    health_path = url.path or "/healthz"

    async def health(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"status": "ok"})

    async def scrape(_: aiohttp.web.Request) -> aiohttp.web.Response:
        response = aiohttp.web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = aiohttp.web.Application()
    app.router.add_get(health_path, health)
    app.router.add_get("/metrics", scrape)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 8080)
    await site.start()
    return runner
