"""Shared helpers for the operator's unit tests: the examples, and the Pod Security checker
with the operator's hardening (tests/helpers/pod_security.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import pod_security

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "crds" / "examples"
INVALID = EXAMPLES / "invalid"
CRD_FILE = ROOT / "crds" / "inferenceservices.serving.modelfleet.dev.yaml"
GOLDEN = Path(__file__).parent / "golden"


def load(path: Path) -> dict[str, Any]:
    """One YAML document."""
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def valid_examples() -> list[Path]:
    """Every valid example InferenceService."""
    return sorted(EXAMPLES.glob("*.yaml"))


def invalid_examples() -> list[Path]:
    """Every invalid example; each carries a ``# expect: <message part>`` first line."""
    return sorted(INVALID.glob("*.yaml"))


def expected_message(path: Path) -> str:
    """The ``# expect:`` text of an invalid example."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def isvc(spec: Mapping[str, Any], name: str = "iris", **meta: Any) -> dict[str, Any]:
    """An InferenceService body around ``spec``."""
    metadata = {"name": name, "namespace": "ml", "uid": "u-1", "generation": 1, **meta}
    return {
        "apiVersion": "serving.modelfleet.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": dict(spec),
    }


def predictor(**fields: Any) -> dict[str, Any]:
    """A spec with an ONNX model on S3 and the given predictor fields."""
    model = {"modelFormat": {"name": "onnx"}, "storageUri": "s3://models/iris"}
    return {"predictor": {"model": model, **fields}}


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every pod template among ``objects``."""
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if template is not None:
            yield obj["metadata"]["name"], template["spec"]


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """Every way ``pod`` breaks PSS restricted, plus a read-only root and resources (O12)."""
    return pod_security.restricted_violations(pod, read_only_root=True, resources=True)
