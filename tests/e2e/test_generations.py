"""O7 on the real API server: sequences of spec edits sent back to back never leave
``observedGeneration`` behind, and the converged state is the final spec's.

The same property as the kmock test (``tests/integration/operator/test_generations.py``), with
fewer sequences: here each one also waits on the real controllers. Edits the CRD's CEL rules
refuse (minReplicas above maxReplicas) are refused by the API server and simply not made, as
for a user. After the last edit, once the status has caught up with the generation, Ready says
InvalidSpec exactly when the final spec is invalid, and the live children are exactly what
``modelfleet render`` prints for it.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet_operator.checks import SpecError
from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import parse
from modelfleet_operator.render import render
from tests.e2e.conftest import isvc
from tests.e2e.kube import Cluster, CommandFailed, wait_for
from tests.helpers.spec_edits import EDITS, ready

pytestmark = pytest.mark.timeout(600)
KINDS = {
    "deployments": "Deployment",
    "services": "Service",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "scaledobjects": "ScaledObject",
    "httproutes": "HTTPRoute",
}
NAMES = (f"gen-{i}" for i in itertools.count())


def caught_up(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    body = cluster.get("inferenceservice", name, namespace) or {}
    generation = body.get("metadata", {}).get("generation")
    status = body.get("status") or {}
    if generation and status.get("observedGeneration") == generation:
        if ready(body).get("observedGeneration") == generation:
            return body
    return None


def live_children(cluster: Cluster, namespace: str, name: str) -> set[tuple[str, str]]:
    listed = cluster.kubectl(
        "get", ",".join(KINDS), "-n", namespace, "-o", "json",
        "-l", f"serving.modelfleet.dev/inferenceservice={name}",
    )  # fmt: skip
    items = json.loads(listed.stdout)["items"]
    return {(i["kind"], i["metadata"]["name"]) for i in items}


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,  # the same sequences on every run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=st.lists(EDITS, min_size=1, max_size=6))
def test_edits_back_to_back_never_leave_observed_generation_behind(
    cluster: Cluster, namespace: str, edits: list[dict[str, Any]]
) -> None:
    name = next(NAMES)
    body = isvc(name, minReplicas=1, maxReplicas=3)
    body["spec"]["modelfleet"] = {"canary": {"storageUri": "s3://models/iris-canary"}}
    cluster.apply(body, namespace=namespace)
    for edit in edits:
        patch = json.dumps({"spec": {"predictor": edit}})
        try:
            cluster.kubectl("patch", "isvc", name, "-n", namespace, "--type=merge", "-p", patch)
        except CommandFailed as refused:  # a CEL rule: the API server keeps the last spec
            assert "is invalid" in str(refused), refused
    final = wait_for(lambda: caught_up(cluster, namespace, name), 60, "observedGeneration")
    try:
        expected: set[tuple[str, str]] | None = {
            (o["kind"], o["metadata"]["name"])
            for o in render(parse(final), OperatorConfig(gateway_api=True))
        }
    except SpecError:
        expected = None
    condition = ready(final)
    assert (condition["reason"] == "InvalidSpec") == (expected is None), (condition, final["spec"])
    if expected is not None:
        wait_for(
            lambda: live_children(cluster, namespace, name) == expected,
            30,
            f"children {sorted(expected or ())}",
        )
