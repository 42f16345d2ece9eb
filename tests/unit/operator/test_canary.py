"""Canary without a mesh: replica split maths, promotion (100 or field removed) and rollback (0)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import parse
from modelfleet_operator.render import render, split_replicas
from tests.unit.operator.helpers import isvc, predictor

CANARY_URI = "s3://models/iris-v2"


def _canary(**fields: Any) -> dict[str, Any]:
    spec = predictor(**fields)
    spec["modelfleet"] = {"canary": {"storageUri": CANARY_URI}}
    return isvc(spec)


def _deployments(body: dict[str, Any], config: OperatorConfig) -> dict[str, dict[str, Any]]:
    objs = render(parse(body), config)
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}


def _uri(dep: dict[str, Any]) -> str:
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == "MODELFLEET_MODEL_URI"))


@pytest.mark.parametrize(
    ("total", "percent", "expected"),
    [
        (10, 10, (9, 1)),
        (5, 20, (4, 1)),
        (4, 50, (2, 2)),
        (4, 25, (3, 1)),
        (3, 50, (1, 2)),  # 1.5 rounds half up
        (1, 10, (1, 1)),  # both models always run: one extra pod
        (2, 99, (1, 1)),
        (10, 0, (10, 0)),
        (10, 100, (0, 10)),
        (0, 30, (0, 0)),
    ],
)
def test_split_math(total: int, percent: int, expected: tuple[int, int]) -> None:
    assert split_replicas(total, percent) == expected


@given(st.integers(0, 500), st.integers(0, 100))
def test_split_properties(total: int, percent: int) -> None:
    stable, canary = split_replicas(total, percent)
    if 0 < percent < 100 and total > 0:
        assert stable >= 1 and canary >= 1
        assert stable + canary == max(total, 2)
        if 1 < canary < total - 1:
            assert abs(canary - total * percent / 100) <= 0.5
    else:
        assert stable + canary == total


def test_canary_runs_second_deployment_behind_same_service(config: OperatorConfig) -> None:
    body = _canary(minReplicas=5, canaryTrafficPercent=20)
    deps = _deployments(body, config)
    assert sorted(deps) == ["iris-predictor", "iris-predictor-canary"]
    assert [deps[n]["spec"]["replicas"] for n in sorted(deps)] == [4, 1]
    assert _uri(deps["iris-predictor"]) == "s3://models/iris"
    assert _uri(deps["iris-predictor-canary"]) == CANARY_URI
    objs = render(parse(body), config)
    (service,) = [o for o in objs if o["kind"] == "Service"]
    for dep in deps.values():
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("percent", [100, None])
def test_promotion_rolls_the_one_deployment_to_the_canary(
    percent: int | None, config: OperatorConfig
) -> None:
    fields = (
        {"minReplicas": 3}
        if percent is None
        else {"minReplicas": 3, "canaryTrafficPercent": percent}
    )
    deps = _deployments(_canary(**fields), config)
    assert list(deps) == ["iris-predictor"]
    assert _uri(deps["iris-predictor"]) == CANARY_URI
    assert deps["iris-predictor"]["spec"]["replicas"] == 3


def test_rollback_keeps_only_the_stable_model(config: OperatorConfig) -> None:
    deps = _deployments(_canary(minReplicas=3, canaryTrafficPercent=0), config)
    assert list(deps) == ["iris-predictor"]
    assert _uri(deps["iris-predictor"]) == "s3://models/iris"


def test_percent_without_canary_model_is_plain(config: OperatorConfig) -> None:
    deps = _deployments(isvc(predictor(canaryTrafficPercent=30)), config)
    assert list(deps) == ["iris-predictor"]


def test_canary_under_hpa_splits_bounds(config: OperatorConfig) -> None:
    objs = render(parse(_canary(minReplicas=2, maxReplicas=10, canaryTrafficPercent=10)), config)
    hpas = {
        o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "HorizontalPodAutoscaler"
    }
    assert (hpas["iris-predictor"]["minReplicas"], hpas["iris-predictor"]["maxReplicas"]) == (1, 9)
    assert (
        hpas["iris-predictor-canary"]["minReplicas"],
        hpas["iris-predictor-canary"]["maxReplicas"],
    ) == (1, 1)
    assert all("replicas" not in o["spec"] for o in objs if o["kind"] == "Deployment")


def test_gateway_weights_are_exact(config: OperatorConfig) -> None:
    cfg = config.model_copy(update={"gateway_api": True})
    objs = render(parse(_canary(minReplicas=1, canaryTrafficPercent=7)), cfg)
    (route,) = [o for o in objs if o["kind"] == "HTTPRoute"]
    weights = [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]
    assert weights == [93, 7]
