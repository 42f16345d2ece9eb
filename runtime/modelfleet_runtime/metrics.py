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
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

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


class RequestSeries(Collector):
    """``modelfleet_requests_total`` (by model, version, protocol and HTTP status) and
    ``modelfleet_request_duration_seconds`` (by model, version and protocol): the two series
    every inference request updates, kept as plain Python numbers and turned into metric
    families at each scrape, exposed exactly as prometheus_client's own Counter and Histogram
    would expose them.

    Why hand-written: prometheus_client's ``Counter.inc`` and ``Histogram.observe`` take a lock
    each and find the bucket in a Python loop, 4.6 % of our server's CPU per small request in
    the bench's profile (bench/PROFILE.md); here a request costs a dict lookup, a bisect and
    three additions. No lock is needed because one thread does all the writing: the event
    loop's, on which both HTTP and gRPC requests finish, and ``/metrics`` (an async route)
    reads on that thread too.
    """

    REQUESTS = "modelfleet_requests"
    DURATION = "modelfleet_request_duration_seconds"
    DURATION_LABELS = ("model", "version", "protocol")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._bounds = buckets
        # The le labels as prometheus_client writes them (0.0005, 1.0, +Inf).
        edges = [floatToGoString(b) for b in buckets]  # type: ignore[no-untyped-call]
        self._edges: list[str] = [*edges, "+Inf"]
        self._cells: dict[tuple[str, str, str, int], tuple[list[float], list[float]]] = {}
        """Per label combination: [count, created] and its duration series' cells, shared by
        every status: [one count per bucket (not cumulative) and +Inf, sum, created]."""
        self._durations: dict[tuple[str, str, str], list[float]] = {}

    def observe(self, model: str, version: str, protocol: str, status: int, seconds: float) -> None:
        cells = self._cells.get((model, version, protocol, status))
        if cells is None:
            cells = self._new(model, version, protocol, status)
        count, duration = cells
        count[0] += 1
        duration[bisect_left(self._bounds, seconds)] += 1  # le: the first bound >= seconds
        duration[-2] += seconds

    def _new(
        self, model: str, version: str, protocol: str, status: int
    ) -> tuple[list[float], list[float]]:
        now = time.time()
        duration = self._durations.get((model, version, protocol))
        if duration is None:
            duration = [0.0] * (len(self._bounds) + 1) + [0.0, now]
            self._durations[(model, version, protocol)] = duration
        cells = self._cells[(model, version, protocol, status)] = ([0.0, now], duration)
        return cells

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            self.REQUESTS,
            "Inference and metadata requests, by model, version, protocol and HTTP status.",
            labels=["model", "version", "protocol", "status"],
        )
        for (model, version, protocol, status), (count, _) in self._cells.items():
            requests.add_metric([model, version, protocol, str(status)], count[0], count[1])
        yield requests
        durations = HistogramMetricFamily(
            self.DURATION,
            "Time from request received to response ready.",
            labels=self.DURATION_LABELS,
        )
        edges = self._edges
        for key, cells in self._durations.items():
            cumulative = list(accumulate(cells[: len(edges)]))
            durations.add_metric(list(key), list(zip(edges, cumulative, strict=True)), cells[-2])
            labels = dict(zip(self.DURATION_LABELS, key, strict=True))
            durations.samples.append(Sample(f"{self.DURATION}_created", labels, cells[-1]))
        yield durations


class Metrics:
    """All of the runtime's series, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = RequestSeries(LATENCY_BUCKETS)
        r.register(self.requests)
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
        self.requests.observe(model, version, protocol, status, seconds)
