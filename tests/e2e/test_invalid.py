"""Bad input on the real API server: what the CRD's schema and CEL rules can refuse is refused
by ``kubectl apply`` with a clear message; what only the operator can judge gets InvalidSpec
in status; nothing else in the namespace is disturbed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import REPO, isvc, wait_ready
from tests.e2e.kube import Cluster, CommandFailed, wait_for

pytestmark = pytest.mark.timeout(300)
INVALID = sorted((REPO / "crds" / "examples" / "invalid").glob("*.yaml"))
REFUSED_BY_THE_API_SERVER = {
    "min-above-max": "minReplicas is greater than maxReplicas",
    "both-autoscalers": "ask for both HPA and KEDA",
}
"""Invalid examples that the CRD's CEL rules refuse at admission, with the message's gist."""


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def settled(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The InferenceService once Ready and its status complete: the cold-start figure comes from
    the pod watch, which may lag the Deployment's readiness by one reconcile."""
    wait_ready(cluster, namespace, name)

    def complete() -> dict[str, Any] | None:
        found = cluster.get("inferenceservice", name, namespace) or {}
        stable = found.get("status", {}).get("components", {}).get("stable", {})
        return found if "lastColdStartSeconds" in stable else None

    return wait_for(complete, 30, f"the cold-start figure on {name}")


def ready_condition(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    found = cluster.get("inferenceservice", name, namespace) or {}
    for condition in found.get("status", {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return dict(condition)
    return None


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_example(cluster: Cluster, namespace: str, path: Path) -> None:
    cluster.apply(isvc("bystander", minReplicas=1), namespace=namespace)
    bystander = settled(cluster, namespace, "bystander")
    deployment = cluster.get("deployment", "bystander-predictor", namespace)
    assert deployment is not None

    example: dict[str, Any] = yaml.safe_load(path.read_text())
    example["metadata"]["namespace"] = namespace
    name = example["metadata"]["name"]
    if path.stem in REFUSED_BY_THE_API_SERVER:
        with pytest.raises(CommandFailed) as refused:
            cluster.apply(example)
        message = str(refused.value)
        assert f'The InferenceService "{name}" is invalid' in message, message
        assert REFUSED_BY_THE_API_SERVER[path.stem] in message, message
        assert cluster.get("inferenceservice", name, namespace) is None
    else:
        cluster.apply(example)

        def invalid() -> dict[str, Any] | None:
            found = ready_condition(cluster, namespace, name)
            return found if found and found["reason"] == "InvalidSpec" else None

        condition = wait_for(invalid, 30, f"InvalidSpec on {name}")
        assert condition["status"] == "False"
        assert expected(path) in condition["message"], condition
        events = cluster.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name},reason=InvalidSpec",
            "-o",
            "name",
        ).stdout
        assert events.strip(), "no InvalidSpec Event"
        assert (
            cluster.list(
                "deployments", namespace, f"serving.modelfleet.dev/inferenceservice={name}"
            )
            == []
        )

    after = cluster.get("deployment", "bystander-predictor", namespace)
    assert after is not None
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"]
    still = cluster.get("inferenceservice", "bystander", namespace)
    assert still is not None and still["status"] == bystander["status"]


@pytest.mark.parametrize(
    ("predictor", "gist"),
    [
        ({"minReplicas": -1}, "should be greater than or equal to 0"),
        ({"canaryTrafficPercent": 150}, "should be less than or equal to 100"),
        ({"scaleMetric": "gpu"}, 'Unsupported value: "gpu"'),
    ],
)
def test_schema_refuses_at_apply(
    cluster: Cluster, namespace: str, predictor: dict[str, Any], gist: str
) -> None:
    with pytest.raises(CommandFailed) as refused:
        cluster.apply(isvc("bad", **predictor), namespace=namespace)
    assert gist in str(refused.value)


def test_versions_rule_refuses_specific_without_versions(cluster: Cluster, namespace: str) -> None:
    body = isvc("bad")
    body["spec"]["modelfleet"] = {"versionPolicy": {"policy": "specific"}}
    with pytest.raises(CommandFailed) as refused:
        cluster.apply(body, namespace=namespace)
    assert "policy 'specific' needs at least one version" in str(refused.value)


def test_one_status_write_per_invalid_spec_and_a_fix_recovers(
    cluster: Cluster, namespace: str
) -> None:
    """No retry storm: an invalid spec gets one status write (and one Event); fixing the spec
    is reconciled like any change."""
    audit = cluster.audit()
    body = isvc("fixme")
    body["spec"]["predictor"]["model"]["modelFormat"] = {"name": "sklearn"}
    cluster.apply(body, namespace=namespace)

    def invalid() -> bool:
        condition = ready_condition(cluster, namespace, "fixme")
        return bool(condition and condition["reason"] == "InvalidSpec")

    wait_for(invalid, 30, "InvalidSpec")
    cluster.apply(isvc("bystander", minReplicas=1), namespace=namespace)
    wait_ready(cluster, namespace, "bystander")  # time enough for a storm to show
    writes = [
        w.resource
        for w in audit.operator_writes()
        if w.namespace == namespace and w.name == "fixme"
    ]
    assert writes == ["inferenceservices/status"] or sorted(writes) == sorted(
        ["inferenceservices", "inferenceservices/status"]  # kopf's own annotation, once
    ), writes
    assert (
        cluster.list("deployments", namespace, "serving.modelfleet.dev/inferenceservice=fixme")
        == []
    )

    body["spec"]["predictor"]["model"]["modelFormat"] = {"name": "onnx"}
    cluster.apply(body, namespace=namespace)
    wait_ready(cluster, namespace, "fixme")
