"""Every query of the chart's Grafana dashboard returns data from a real Prometheus scraping a
real runtime and a real operator; the chart's alert rules evaluate there too.

Prometheus (Debian's package, ``tests/helpers/prometheus.py``) scrapes, every second:
``modelfleet serve`` as a process on loopback (a repository whose version 1 loads and version 2
does not, dynamic batching on, TLS with a certificate valid for a day, scraped over https),
with the labels the chart's PodMonitor gives a predictor pod (namespace, service); and the
operator's one port (health and ``/metrics``), the real operator (our handlers in kopf)
reconciling against the kmock emulator of this folder's conftest, with ``honor_labels`` as the
chart's ServiceMonitor sets it. kmock rather than the real control plane
(tests/e2e): what is under test is the metric names and the PromQL, not the API server's
semantics; the operator's reconciles, writes, status and Ready reasons are all real here, and
the test needs neither the e2e lock nor a cluster start.

The test sends successes and errors (400, 404, 503), makes one InferenceService valid and one
InvalidSpec, then runs each panel's ``targets[].expr``, template variables substituted, through
Prometheus' HTTP API and requires at least one series from each. A metric renamed in
``metrics.py`` leaves its panels empty and fails ``test_every_panel_query_returns_data`` (the
static name check, tests/unit/chart/test_dashboard.py, fails as well).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import onnx_models
from tests.helpers.prometheus import Prometheus, Target, prometheus_process
from tests.helpers.runtime import Served, free_port, serve_process
from tests.helpers.tls import make_tls
from tests.integration.operator.conftest import NS, Cluster, OperatorFactory, isvc
from tests.unit.chart.helpers import CHART_DIR, render

pytestmark = pytest.mark.timeout(180)

DASHBOARD: dict[str, Any] = json.loads(
    (CHART_DIR / "dashboards" / "modelfleet-runtime.json").read_text()
)
MODEL = "adder"
VARIABLES = {"$namespace": NS, "$model": MODEL, "$__rate_interval": "1m"}
"""What Grafana would put in: the namespace and model of the test's series; a rate window that
holds the whole test (the dashboard's rates read the traffic sent)."""
ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}


@dataclass(frozen=True)
class Query:
    panel: str
    expr: str


QUERIES = [Query(p["title"], t["expr"]) for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def _substitute(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


@dataclass(frozen=True)
class Stack:
    runtime: Served
    trust: ssl.SSLContext
    """The runtime serves TLS (so the certificate's expiry has a panel and an alert)."""
    prometheus: Prometheus
    operator_endpoint: str


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The runtime and Prometheus; the operator's port is chosen here, the test starts it."""
    blobs = {1: onnx_models.add_constant(1.0), 2: b"not an ONNX model"}
    repo = onnx_models.write_repository(tmp_path / MODEL, blobs)
    args = ["--model-uri", str(repo), "--version-policy", "all", "--grpc-port", "0"]
    args += ["--cache-dir", str(tmp_path / "cache")]  # the model cache's panel has data too
    tls = make_tls(tmp_path / "tls")  # a server certificate valid for one day
    args += ["--tls-cert-file", str(tls.cert), "--tls-key-file", str(tls.key)]
    trust = ssl.create_default_context(cafile=tls.ca)
    operator_port = free_port()
    (rule,) = render({"prometheusRule": {"enabled": True}}).of_kind("PrometheusRule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    with serve_process(tmp_path, *args, "--max-batch-size", "4", tls=trust) as runtime:
        pod = {"namespace": NS, "service": MODEL, "pod": f"{MODEL}-predictor-0"}
        operator = {"namespace": "modelfleet-system", "pod": "modelfleet-0"}
        targets = [
            Target("runtime", runtime.url.removeprefix("https://"), pod, ca_file=tls.ca),
            Target("operator", f"127.0.0.1:{operator_port}", operator, honor_labels=True),
        ]
        with prometheus_process(tmp_path, targets, [rules]) as prometheus:
            yield Stack(runtime, trust, prometheus, f"http://127.0.0.1:{operator_port}/healthz")


async def _traffic(url: str, trust: ssl.SSLContext) -> dict[int, int]:
    """Successes and each kind of error the dashboard's error panels count; statuses seen."""
    calls = [("/v2/models/adder/infer", {"inputs": [ROW]})] * 30
    calls += [("/v2/models/adder/infer", {"inputs": [{**ROW, "datatype": "INT8"}]})] * 5
    calls += [("/v2/models/nope/infer", {"inputs": [ROW]})] * 3
    calls += [("/v2/models/adder/versions/2/infer", {"inputs": [ROW]})] * 2
    seen: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=10, verify=trust) as http:
        answers = await asyncio.gather(*(http.post(path, json=body) for path, body in calls))
    for answer in answers:
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
    return seen


async def _query(http: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    answer = await http.get("/api/v1/query", params={"query": expr})
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


async def _invalid_spec_reported(cluster: Cluster, name: str) -> None:
    def reason() -> bool:
        obj = cluster.get("serving.modelfleet.dev/v1alpha1/inferenceservices", name) or {}
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c.get("reason") == "InvalidSpec" for c in conditions)

    await cluster.eventually(reason, what=f"{name}: InvalidSpec in status")


async def test_every_panel_query_returns_data(
    stack: Stack, cluster: Cluster, start_operator: OperatorFactory
) -> None:
    await start_operator(endpoint=stack.operator_endpoint)
    await cluster.create(isvc("adder"))
    await cluster.create(isvc("typo", minReplicas=3, maxReplicas=1))
    await cluster.handled("adder")
    await _invalid_spec_reported(cluster, "typo")
    seen = await _traffic(stack.runtime.url, stack.trust)
    assert set(seen) == {200, 400, 404, 503}, seen

    empty = QUERIES
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    async with httpx.AsyncClient(base_url=stack.prometheus.url, timeout=10) as http:
        while empty and loop.time() < deadline:
            await asyncio.sleep(1)  # one scrape interval; also yields to the emulator
            empty = [q for q in empty if not await _query(http, _substitute(q.expr))]
        namespaces = await http.get(
            "/api/v1/label/namespace/values", params={"match[]": "modelfleet_requests_total"}
        )
        models = await http.get(
            "/api/v1/label/model/values", params={"match[]": "modelfleet_requests_total"}
        )
    assert not empty, "queries without data: " + "; ".join(f"{q.panel}: {q.expr}" for q in empty)
    assert len(QUERIES) == 37 and len([p for p in DASHBOARD["panels"] if p.get("targets")]) == 26
    # The template variables' own queries (label_values) find the test's namespace and model.
    assert NS in namespaces.json()["data"] and MODEL in models.json()["data"]


async def test_alert_rules_evaluate_on_the_live_series(
    stack: Stack, cluster: Cluster, start_operator: OperatorFactory
) -> None:
    """Every rule evaluates without error on what the code exports, and the alerts this setup
    provokes are raised: version 2 failed to load (firing at once), it is a wanted version not
    loaded, one InferenceService has an invalid spec, and the runtime's certificate expires
    within a day (pending: their ``for`` is minutes)."""
    await start_operator(endpoint=stack.operator_endpoint)
    await cluster.create(isvc("typo", minReplicas=3, maxReplicas=1))
    await _invalid_spec_reported(cluster, "typo")
    expected = {
        "ModelFleetModelLoadFailed": "firing",
        "ModelFleetVersionNotReady": "pending",
        "ModelFleetInvalidSpec": "pending",
        "ModelFleetTLSCertificateExpiring": "pending",
    }
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    states: dict[str, str] = {}
    rules: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=stack.prometheus.url, timeout=10) as http:
        while loop.time() < deadline:
            await asyncio.sleep(1)
            groups = (await http.get("/api/v1/rules")).json()["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            states = {r["name"]: r["state"] for r in rules}
            if all(states.get(name) == state for name, state in expected.items()):
                break
    assert len(rules) == 10
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    assert {name: states.get(name) for name in expected} == expected
    assert {n: s for n, s in states.items() if n not in expected} == dict.fromkeys(
        set(states) - set(expected), "inactive"
    )
