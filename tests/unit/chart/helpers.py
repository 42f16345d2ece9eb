"""Render the chart with Helm's real engine (helm_python) and split the output into objects.

Shared by the chart tests. Every render goes through ``Chart.render``, the same template engine
and value coalescing (with values.schema.json validation) that ``helm install`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from helm_python import Chart
from prometheus_client import CollectorRegistry

from modelfleet_operator.metrics import OperatorMetrics
from modelfleet_runtime.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]
CHART_DIR = REPO / "charts" / "modelfleet"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*.yaml"))
RELEASE = "modelfleet"
NAMESPACE = "modelfleet-system"
KUBE_VERSION = "1.33"
"""The Kubernetes version every rendered object is validated against."""

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """One render of the chart: the objects by template, and NOTES.txt."""

    objects: list[Manifest]
    notes: str

    def of_kind(self, *kinds: str) -> list[Manifest]:
        """The rendered objects whose kind is one of ``kinds``."""
        return [obj for obj in self.objects if obj["kind"] in kinds]


def load_values(path: Path | None) -> dict[str, Any]:
    """Values from a YAML file, or {} for the chart's defaults."""
    if path is None:
        return {}
    loaded: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return loaded


def render(values: dict[str, Any] | None = None) -> Rendered:
    """Render the chart for ``values`` as release RELEASE in NAMESPACE."""
    chart = Chart.load(CHART_DIR)
    out = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    objects: list[Manifest] = []
    notes = ""
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return Rendered(objects=objects, notes=notes)


def pod_specs(obj: Manifest) -> list[Manifest]:
    """The pod spec(s) inside a workload object (Pod, Deployment, StatefulSet, Job, ...)."""
    kind = obj["kind"]
    if kind == "Pod":
        return [obj["spec"]]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [obj["spec"]["template"]["spec"]]
    if kind == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_series() -> dict[str, str]:
    """Every series name the runtime and the operator register (a counter's ``_total``, a
    histogram's ``_bucket``, ``_sum`` and ``_count``), mapped to its metric's name: what the
    dashboard and the alert rules may query. Read from the code, so a rename shows."""
    names: dict[str, str] = {}
    for registry in (Metrics(CollectorRegistry()).registry, OperatorMetrics().registry):
        for family in registry.collect():
            names |= {family.name + suffix: family.name for suffix in SUFFIXES[family.type]}
    return names
