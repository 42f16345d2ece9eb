"""The Grafana dashboard shipped with the chart queries exactly the runtime's and the operator's
metrics (tests/integration/operator/test_dashboard_queries.py runs every query on Prometheus)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.unit.chart.helpers import CHART_DIR

DASHBOARD: dict[str, Any] = json.loads(
    (CHART_DIR / "dashboards" / "modelfleet-runtime.json").read_text()
)
METRICS = {
    "modelfleet_requests_total",
    "modelfleet_request_duration_seconds",
    "modelfleet_requests_in_flight",
    "modelfleet_batch_size",
    "modelfleet_batch_queue_seconds",
    "modelfleet_model_load_seconds",
    "modelfleet_model_load_failures_total",
    "modelfleet_model_versions_loaded",
    "modelfleet_model_versions_not_ready",
    "modelfleet_requests_shed_total",
    "modelfleet_operator_reconciles_total",
    "modelfleet_operator_reconcile_duration_seconds",
    "modelfleet_operator_writes_total",
    "modelfleet_operator_inferenceservices",
    "modelfleet_operator_inferenceservice_ready",
}
HISTOGRAMS = {
    "modelfleet_request_duration_seconds",
    "modelfleet_batch_size",
    "modelfleet_batch_queue_seconds",
    "modelfleet_model_load_seconds",
    "modelfleet_operator_reconcile_duration_seconds",
}


def _exprs() -> list[str]:
    return [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def _metric(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in HISTOGRAMS:
            return base
    return name


def test_queries_use_only_exported_metrics_and_all_of_them() -> None:
    used = {_metric(m) for e in _exprs() for m in re.findall(r"\bmodelfleet_\w+", e)}
    assert used == METRICS


def test_panels_have_unique_ids_and_valid_layout() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24


def test_latency_percentiles_and_status_breakdown_are_there() -> None:
    exprs = _exprs()
    for q in ("0.5", "0.9", "0.99"):
        assert any(f"histogram_quantile({q}" in e and "request_duration" in e for e in exprs)
    assert any("sum by (status)" in e for e in exprs)
    assert DASHBOARD["uid"] == "modelfleet-runtime"
