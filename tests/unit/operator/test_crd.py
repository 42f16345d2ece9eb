"""The CRD: generated from the spec models, committed under crds/, structural, and every
example validates against its schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelfleet_operator.crd import build_crd, crd_yaml
from tests.unit.operator.helpers import CRD_FILE, invalid_examples, load, valid_examples


def _schema() -> dict[str, Any]:
    return dict(build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def test_committed_crd_is_up_to_date() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), (
        "crds/ is out of date: run `modelfleet crd > crds/"
        "inferenceservices.serving.modelfleet.dev.yaml`"
    )


def test_crd_identity() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "inferenceservices.serving.modelfleet.dev"
    assert spec["scope"] == "Namespaced" and spec["names"]["shortNames"] == ["isvc"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["URL", "Ready", "Versions", "Replicas", "Canary", "Age"]


FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "additionalProperties"}


def _walk(node: Any, path: str = "") -> list[str]:
    """Structural-schema problems: forbidden keywords, nodes without a type."""
    problems: list[str] = []
    if not isinstance(node, dict):
        return problems
    problems += [
        f"{path}: {k}"
        for k in FORBIDDEN & set(node)
        if k != "additionalProperties" or node[k] is True or node[k] is False
    ]
    if "type" not in node:
        problems.append(f"{path}: no type")
    for name, child in (node.get("properties") or {}).items():
        problems += _walk(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            problems += _walk(node[key], f"{path}[{key}]")
    return problems


def test_schema_is_structural() -> None:
    assert _walk(_schema()) == []


@pytest.mark.parametrize("example", valid_examples(), ids=lambda p: p.stem)
def test_examples_validate_against_schema(example: Path) -> None:
    jsonschema.validate(load(example), _schema())


@pytest.mark.parametrize("example", invalid_examples(), ids=lambda p: p.stem)
def test_invalid_examples_reach_the_operator(example: Path) -> None:
    """Semantic errors pass admission (unknown fields are kept, not pruned) and are reported
    by the operator as InvalidSpec naming the field."""
    jsonschema.validate(load(example), _schema())


@pytest.mark.parametrize(
    "predictor",
    [
        {"minReplicas": -1},
        {"minReplicas": "two"},
        {"scaleMetric": "gpu"},
        {"canaryTrafficPercent": 150},
        {"model": {"modelFormat": {"name": "onnx"}}},
        {"model": {"storageUri": "s3://a/b", "protocolVersion": "grpc-v1"}},
    ],
)
def test_schema_rejects_structurally_invalid_specs(predictor: dict[str, Any]) -> None:
    body = {
        "apiVersion": "serving.modelfleet.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "x"},
        "spec": {"predictor": predictor},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, _schema())
