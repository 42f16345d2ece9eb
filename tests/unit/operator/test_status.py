"""The status builder: metav1.Condition shape, transition times, observedGeneration,
RolloutStalled and InvalidSpec."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from modelfleet_operator.parse import ParsedService, parse
from modelfleet_operator.status import build_status, invalid_spec_status
from tests.unit.operator.helpers import isvc, predictor

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _svc(generation: int = 3, **fields: Any) -> ParsedService:
    return parse(isvc(predictor(minReplicas=2, **fields), generation=generation))


def _dep(
    name: str = "iris-predictor", ready: int = 2, stalled: bool = False, gen: int = 1
) -> dict[str, Any]:
    conds = [{"type": "Available", "status": "True" if ready >= 2 else "False"}]
    if stalled:
        conds.append(
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "iris-predictor-7d" has timed out progressing.',
            }
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "generation": gen},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": gen,
            "replicas": 2,
            "updatedReplicas": ready,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": conds,
        },
    }


def _cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_ready_status_shape() -> None:
    status = build_status(_svc(), {"iris-predictor": _dep()}, None, T0)
    assert status["observedGeneration"] == 3
    assert status["url"] == "http://iris.ml.svc.cluster.local"
    assert status["replicas"] == 2
    assert status["modelVersions"] == "latest 1"
    for cond in status["conditions"]:
        assert set(cond) == {
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        }
        assert cond["status"] in ("True", "False", "Unknown")
        assert re.fullmatch(r"[A-Z][A-Za-z]*", cond["reason"])
        assert STAMP.match(cond["lastTransitionTime"])
        assert cond["observedGeneration"] == 3
    assert _cond(status, "Ready")["status"] == "True"
    assert [c["type"] for c in status["conditions"]] == ["Ready", "PredictorReady"]


def test_transition_time_moves_only_on_flip() -> None:
    svc = _svc()
    first = build_status(svc, [_dep()], None, T0)
    same = build_status(svc, [_dep()], first, T1)
    assert same == first  # unchanged world: identical status, nothing to write
    flipped = build_status(svc, [_dep(ready=1)], same, T1)
    assert _cond(flipped, "Ready")["status"] == "False"
    assert _cond(flipped, "Ready")["lastTransitionTime"] == "2025-01-01T12:05:00Z"


def test_observed_generation_follows_spec() -> None:
    status = build_status(_svc(generation=9), [_dep()], None, T0)
    assert status["observedGeneration"] == 9
    assert {c["observedGeneration"] for c in status["conditions"]} == {9}


def test_missing_deployment_is_not_ready() -> None:
    status = build_status(_svc(), {}, None, T0)
    assert _cond(status, "Ready")["status"] == "False"
    assert _cond(status, "PredictorReady")["reason"] == "Creating"


def test_progress_deadline_is_rollout_stalled_and_keeps_last_ready_model() -> None:
    svc = _svc()
    ready = build_status(svc, [_dep()], None, T0)
    newer = parse(
        isvc(
            {
                "predictor": {
                    **predictor(minReplicas=2)["predictor"],
                    "model": {"modelFormat": {"name": "onnx"}, "storageUri": "s3://models/iris-v2"},
                }
            },
            generation=4,
        )
    )
    stalled = build_status(newer, [_dep(ready=1, stalled=True)], ready, T1)
    assert _cond(stalled, "Ready")["reason"] == "RolloutStalled"
    assert "timed out" in _cond(stalled, "Ready")["message"]
    comp = stalled["components"]["stable"]
    assert comp["storageUri"] == "s3://models/iris-v2"
    assert comp["latestReadyStorageUri"] == "s3://models/iris"


def test_canary_condition_and_traffic() -> None:
    body = isvc(
        predictor(minReplicas=4, canaryTrafficPercent=25)
        | {"modelfleet": {"canary": {"storageUri": "s3://models/v2"}}}
    )
    svc = parse(body)
    status = build_status(svc, [_dep(), _dep("iris-predictor-canary", ready=0)], None, T0)
    assert [c["type"] for c in status["conditions"]] == ["Ready", "PredictorReady", "CanaryReady"]
    assert _cond(status, "CanaryReady")["status"] == "False"
    assert _cond(status, "Ready")["status"] == "False"
    assert status["canaryTrafficPercent"] == 25
    assert status["components"]["canary"]["trafficPercent"] == 25


def test_other_kinds_with_the_same_name_are_ignored() -> None:
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "iris-predictor"}}
    status = build_status(_svc(maxReplicas=4), [_dep(), hpa], None, T0)
    assert _cond(status, "Ready")["status"] == "True"


def test_invalid_spec_status() -> None:
    body = isvc(predictor(minReplicas=5, maxReplicas=1), generation=6)
    previous = build_status(_svc(), [_dep()], None, T0)
    status = invalid_spec_status(body, "spec.predictor: minReplicas (5) is greater", previous, T1)
    ready = _cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith("spec.predictor")
    assert ready["lastTransitionTime"] == "2025-01-01T12:05:00Z"
    assert status["observedGeneration"] == 6 and ready["observedGeneration"] == 6
    assert status["url"] == previous["url"]  # the old children still serve
    again = invalid_spec_status(body, ready["message"], status, T1 + timedelta(hours=1))
    assert again == status


def test_invalid_spec_status_from_parsed_service() -> None:
    status = invalid_spec_status(_svc(generation=2), "bad", None, T0)
    assert status["observedGeneration"] == 2


def test_scaled_to_zero_is_ready() -> None:
    svc = parse(isvc(predictor(minReplicas=0, maxReplicas=3, scaleMetric="concurrency")))
    dep = _dep(ready=0)
    dep["spec"]["replicas"] = 0
    dep["status"]["conditions"] = [{"type": "Available", "status": "True"}]
    status = build_status(svc, [dep], None, T0)
    assert _cond(status, "PredictorReady")["reason"] == "ScaledToZero"
    assert _cond(status, "Ready")["status"] == "True"
