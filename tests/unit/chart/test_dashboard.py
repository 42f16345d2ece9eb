"""The Grafana dashboard shipped with the chart queries exactly the runtime's and the operator's
metrics (tests/integration/operator/test_dashboard_queries.py runs every query on Prometheus)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.unit.chart.helpers import CHART_DIR, exported_series

DASHBOARD: dict[str, Any] = json.loads(
    (CHART_DIR / "dashboards" / "modelfleet-runtime.json").read_text()
)


def _exprs() -> list[str]:
    return [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def test_queries_use_only_exported_metrics_and_all_of_them() -> None:
    """Every series a query names is one the code registers (a rename in metrics.py fails
    here), and every metric of the runtime and the operator has a panel."""
    exported = exported_series()
    used = {m for e in _exprs() for m in re.findall(r"\bmodelfleet_\w+", e)}
    assert used <= exported.keys(), used - exported.keys()
    assert {exported[m] for m in used} == set(exported.values())


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
