"""``metrics.RequestSeries`` (the two series every inference request updates, counted in plain
Python) exposes exactly what prometheus_client's own Counter and Histogram expose for the same
requests: every sample, label and value, bucket edges included; only the creation timestamps
differ, as between any two processes."""

from __future__ import annotations

import random
import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from modelfleet_runtime.metrics import LATENCY_BUCKETS, Metrics

CREATED = re.compile(rb"^(modelfleet_\w+_created\{[^}]*\}) \S+$", re.MULTILINE)


def reference() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter(
        "modelfleet_requests",
        "Inference and metadata requests, by model, version, protocol and HTTP status.",
        ["model", "version", "protocol", "status"],
        registry=registry,
    )
    histogram = Histogram(
        "modelfleet_request_duration_seconds",
        "Time from request received to response ready.",
        ["model", "version", "protocol"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    return registry, counter, histogram


def exposition(registry: CollectorRegistry) -> bytes:
    text = generate_latest(registry)
    return CREATED.sub(rb"\1 T", text)


FAMILY = re.compile(
    rb"^(?:# (?:HELP|TYPE) )?modelfleet_(?:requests_(?:total|created)"
    rb"|request_duration_seconds(?:_bucket|_count|_sum|_created)?)[ {]"
)


def mine(text: bytes) -> list[bytes]:
    """The lines of these two families, in a fixed order (label combinations are exposed in
    the order they first appeared, which differs between the two)."""
    return sorted(line for line in text.splitlines() if FAMILY.match(line))


def test_the_exposition_is_prometheus_clients_own() -> None:
    ours = Metrics()
    registry, counter, histogram = reference()
    rng = random.Random(7)
    # Every bucket edge exactly (le is inclusive), values between and past the last edge.
    durations = [*LATENCY_BUCKETS, 0.0, 1e-6, 0.00051, 0.7, 11.0, 3600.0]
    durations += [rng.uniform(0, 0.05) for _ in range(500)]
    for seconds in durations:
        model = rng.choice(["iris", "unknown"])
        version = rng.choice(["1", "2", ""])
        protocol = rng.choice(["v2", "v1", "grpc"])
        status = rng.choice([200, 200, 200, 400, 404, 503])
        ours.observe_request(model, version, protocol, status, seconds)
        counter.labels(model, version, protocol, str(status)).inc()
        histogram.labels(model, version, protocol).observe(seconds)
    expected = exposition(registry)
    got = exposition(ours.registry)
    assert len(mine(expected)) > 400  # most label combinations were drawn
    assert mine(got) == mine(expected)
    assert b'le="+Inf",model="iris",protocol="v2",version="1"' in expected  # the test saw data


def test_a_new_label_combination_starts_at_zero_with_its_first_request() -> None:
    ours = Metrics()
    ours.observe_request("iris", "1", "v2", 200, 0.003)
    ours.observe_request("iris", "1", "v2", 503, 0.0001)
    value = ours.registry.get_sample_value
    labels = {"model": "iris", "version": "1", "protocol": "v2"}
    assert value("modelfleet_requests_total", labels | {"status": "200"}) == 1
    assert value("modelfleet_requests_total", labels | {"status": "503"}) == 1
    assert value("modelfleet_request_duration_seconds_count", labels) == 2
    assert value("modelfleet_request_duration_seconds_bucket", labels | {"le": "0.0005"}) == 1
    assert value("modelfleet_request_duration_seconds_bucket", labels | {"le": "0.002"}) == 1
    assert value("modelfleet_request_duration_seconds_bucket", labels | {"le": "0.005"}) == 2
    assert value("modelfleet_request_duration_seconds_sum", labels) == 0.003 + 0.0001
