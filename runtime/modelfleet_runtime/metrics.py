"""Prometheus metrics of the runtime, on a registry the caller owns (never the global one).

``fastpath.py`` and ``grpc_api.py`` record inference requests (``observe_request``); the data
plane counts requests it sheds (``shed``); the model repository records loads, warm starts and
the versions its policy wants but has not loaded, and how long each phase of a version's start
took (``record_start``); the model cache (``storage/cache.py``) records its lookups; the
batcher records batch sizes and queue times. The chart's alert rules
(``templates/prometheusrule.yaml``) and dashboard query these names. Label values are model
names, version numbers, protocol names, phases and status codes: never anything from a URI or a
credential.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelfleet_runtime.startup import PHASES

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class TlsExpiry(Collector):
    """``modelfleet_tls_certificate_expiry_timestamp_seconds``: when the certificate served now
    expires, read at each scrape from ``source`` (``server.build`` sets it to the TLS files'
    current certificate). Without TLS the family has no sample, so no alert can misread it."""

    NAME = "modelfleet_tls_certificate_expiry_timestamp_seconds"

    def __init__(self) -> None:
        self.source: Callable[[], float | None] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            self.NAME,
            "When the TLS certificate this server presents expires (its notAfter), in seconds "
            "since the epoch; follows rotations. No sample without TLS.",
        )
        value = self.source() if self.source is not None else None
        if value is not None:
            family.add_metric([], value)
        yield family


class Metrics:
    """All of the runtime's series, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelfleet_requests",
            "Inference and metadata requests, by model, version, protocol and HTTP status.",
            ["model", "version", "protocol", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "modelfleet_request_duration_seconds",
            "Time from request received to response ready.",
            ["model", "version", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "modelfleet_requests_in_flight", "Requests being served now.", ["model"], registry=r
        )
        self.batch_size = Histogram(
            "modelfleet_batch_size",
            "Rows per batch run by the dynamic batcher.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_queue = Histogram(
            "modelfleet_batch_queue_seconds",
            "Time the oldest request of each batch waited in the queue.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.load_duration = Histogram(
            "modelfleet_model_load_seconds",
            "Time to fetch, verify, load and warm one model version.",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.load_failures = Counter(
            "modelfleet_model_load_failures",
            "Model versions that failed to fetch or load, by reason.",
            ["model", "version", "reason"],
            registry=r,
        )
        self.versions_loaded = Gauge(
            "modelfleet_model_versions_loaded",
            "Model versions loaded and serving.",
            ["model"],
            registry=r,
        )
        self.cache_results = Counter(
            "modelfleet_model_cache",
            "Versions looked up in the model cache (cache_dir): hit (nothing downloaded), miss "
            "(downloaded into it) or corrupt (a cached file differed from its record; fetched "
            "again).",
            ["model", "result"],
            registry=r,
        )
        self.cache_evictions = Counter(
            "modelfleet_model_cache_evictions",
            "Cached versions this process evicted to keep the cache under cache_size_limit.",
            registry=r,
        )
        self.optimized_cache = Counter(
            "modelfleet_optimized_model_cache",
            "Sessions created from a saved optimized graph (hit: a warm start), or saving one "
            "(miss; corrupt: the saved graph differed from its record).",
            ["model", "result"],
            registry=r,
        )
        self.versions_not_ready = Gauge(
            "modelfleet_model_versions_not_ready",
            "Model versions the version policy wants that are not loaded (loading, failed to "
            "load, or missing from storage).",
            ["model"],
            registry=r,
        )
        self.shed = Counter(
            "modelfleet_requests_shed",
            "Requests refused with 503 because the server was full, by reason: concurrency "
            "(max_concurrency requests in flight) or queue (the batch queue held max_queue_size).",
            ["model", "reason"],
            registry=r,
        )
        self.start_phase = Gauge(
            "modelfleet_model_start_phase_seconds",
            "How long each phase of a version's last start took: download (and unpack), "
            "verify (digests not computed during the download), load (session creation), "
            "warmup.",
            ["model", "version", "phase"],
            registry=r,
        )
        self.http_connections_open = Gauge(
            "modelfleet_http_connections_open",
            "Connections open on the HTTP port (refused ones not counted).",
            registry=r,
        )
        self.tls_expiry = TlsExpiry()
        r.register(self.tls_expiry)
        self.http_connections_closed = Counter(
            "modelfleet_http_connections_closed",
            "HTTP connections the server closed on a slow client (header_timeout, "
            "body_timeout) or refused over --max-connections (over_capacity).",
            ["reason"],
            registry=r,
        )
        self._series: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}

    def record_start(self, model: str, version: int, seconds: Mapping[str, float]) -> None:
        """Set the phase times of ``version``'s last start (``startup.StartPhases``)."""
        for phase, value in seconds.items():
            self.start_phase.labels(model, str(version), phase).set(value)

    def forget_start(self, model: str, version: int) -> None:
        """Drop a retired version's phase times."""
        for phase in PHASES:
            with contextlib.suppress(KeyError):
                self.start_phase.remove(model, str(version), phase)

    def observe_request(
        self, model: str, version: str, protocol: str, status: int, seconds: float
    ) -> None:
        """Count one request and its duration (HTTP's status numbers, for gRPC too)."""
        key = (model, version, protocol, status)
        series = self._series.get(key)
        if series is None:  # label lookups take a lock: do them once per combination
            series = self._series[key] = (
                self.requests.labels(model, version, protocol, str(status)),
                self.request_duration.labels(model, version, protocol),
            )
        series[0].inc()
        series[1].observe(seconds)
