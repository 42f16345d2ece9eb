"""The chart's crds/ holds the repository's CRDs unchanged (Helm installs them from there), plus
kopf's peering CRDs; all are valid apiextensions.k8s.io/v1 objects."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import yaml
from helm_python import Chart

from tests.unit.chart.helpers import CHART_DIR, KUBE_VERSION, REPO

REPO_CRDS = REPO / "crds"
CHART_CRDS = CHART_DIR / "crds"
CHART_ONLY = {"kopf-peering.yaml"}


def _yaml_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.yaml"))}


def test_chart_crds_are_a_copy_of_the_repository_crds() -> None:
    repo, chart = _yaml_files(REPO_CRDS), _yaml_files(CHART_CRDS)
    assert repo, "crds/ holds no CRD yet"
    assert set(chart) - CHART_ONLY == set(repo), "cp crds/*.yaml charts/modelfleet/crds/"
    for name, data in repo.items():
        assert chart[name] == data, f"charts/modelfleet/crds/{name} differs from crds/{name}"
    assert not [p for p in CHART_CRDS.iterdir() if p.is_dir()]  # Helm would install examples


def test_helm_sees_every_crd_and_each_is_valid() -> None:
    crds = Chart.load(CHART_DIR).crds
    docs = [doc for crd in crds for doc in yaml.safe_load_all(crd["data"]) if doc]
    names = {doc["metadata"]["name"] for doc in docs}
    assert "inferenceservices.serving.modelfleet.dev" in names
    assert {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"} <= names
    for doc in docs:
        assert doc["kind"] == "CustomResourceDefinition"
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
