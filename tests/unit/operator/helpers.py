"""Shared helpers for the operator's unit tests: the examples, and a Pod Security checker."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

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


# --- Pod Security Standards "restricted" (kubernetes.io: pod-security-standards) ---

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every pod template among ``objects``."""
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if template is not None:
            yield obj["metadata"]["name"], template["spec"]


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """Every way ``pod`` breaks PSS restricted (plus read-only root and resources)."""
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(f"{key} set")
    for vol in pod.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {vol['name']}: type {sorted(kinds)} not allowed")
    if (psc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        out.append("pod seccompProfile not RuntimeDefault/Localhost")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    for ctr in containers:
        out += [f"{ctr['name']}: {v}" for v in _container_violations(ctr, psc)]
    return out


def _container_violations(ctr: Mapping[str, Any], psc: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    sc = ctr.get("securityContext") or {}
    if sc.get("privileged"):
        out.append("privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append("allowPrivilegeEscalation not false")
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        out.append("runAsNonRoot not true")
    if sc.get("runAsUser", psc.get("runAsUser")) in (0, None):
        out.append("runAsUser unset or 0")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append("capabilities do not drop ALL")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        out.append("capabilities added")
    if any(p.get("hostPort") for p in ctr.get("ports") or []):
        out.append("hostPort")
    if sc.get("readOnlyRootFilesystem") is not True:
        out.append("root filesystem writable")
    res = ctr.get("resources") or {}
    for side in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(res.get(side) or {}):
            out.append(f"resources.{side} lacks cpu or memory")
    return out
