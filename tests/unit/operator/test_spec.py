"""Spec validation: every valid example parses, every invalid one fails with a message that
names the field and says what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelfleet_operator.parse import SpecError, parse
from tests.unit.operator.helpers import (
    expected_message,
    invalid_examples,
    isvc,
    load,
    predictor,
    valid_examples,
)


@pytest.mark.parametrize("example", valid_examples(), ids=lambda p: p.stem)
def test_valid_examples_parse(example: Path) -> None:
    svc = parse(load(example))
    assert svc.name == load(example)["metadata"]["name"]
    assert svc.spec.model.storage_uri


@pytest.mark.parametrize("example", invalid_examples(), ids=lambda p: p.stem)
def test_invalid_examples_fail_clearly(example: Path) -> None:
    with pytest.raises(SpecError) as info:
        parse(load(example))
    assert expected_message(example) in info.value.message
    assert info.value.message.startswith(("spec.", "metadata."))


def test_identity_is_kept() -> None:
    svc = parse(isvc(predictor(), uid="abc", generation=7))
    assert (svc.name, svc.namespace, svc.uid, svc.generation) == ("iris", "ml", "abc", 7)


def test_onnx_shortcut_equals_model_form() -> None:
    short = parse(
        isvc({"predictor": {"onnx": {"storageUri": "gs://kfserving-examples/onnx/style"}}})
    )
    assert short.spec.model.storage_uri == "gs://kfserving-examples/onnx/style"
    assert short.spec.autoscaler is None


def _fails(spec: dict[str, Any], part: str, **meta: Any) -> None:
    with pytest.raises(SpecError) as info:
        parse(isvc(spec, **meta))
    assert part in info.value.message


def _with(**modelfleet: Any) -> dict[str, Any]:
    return {**predictor(), "modelfleet": modelfleet}


@pytest.mark.parametrize(
    ("spec", "part"),
    [
        ({"predictor": {}}, "spec.predictor.model: missing"),
        ({**predictor(), "explainer": {}}, "spec.explainer"),
        ({"predictor": {"tensorflow": {"storageUri": "gs://x/y"}}}, "spec.predictor.tensorflow"),
        ({"predictor": {"model": {"storageUri": "s3://a/b"}}}, "modelFormat: missing"),
        (
            {
                "predictor": {
                    "model": {"modelFormat": {"name": "onnx"}, "storageUri": "s3://a/b"},
                    "onnx": {"storageUri": "s3://a/b"},
                }
            },
            "either model or onnx",
        ),
        (predictor(minReplicas=-1), "spec.predictor.minReplicas"),
        (predictor(canaryTrafficPercent=101), "canaryTrafficPercent"),
        (predictor(scaleMetric="gpu"), "spec.predictor.scaleMetric"),
        (
            {"predictor": {"model": {"modelFormat": {"name": "onnx"}, "storageUri": "s3:///x"}}},
            "no bucket",
        ),
        (
            {
                "predictor": {
                    "model": {
                        "modelFormat": {"name": "onnx"},
                        "storageUri": "https://metadata.google.internal/x",
                    }
                }
            },
            "metadata",
        ),
        (
            {
                "predictor": {
                    "model": {"modelFormat": {"name": "onnx"}, "storageUri": "https://[::1]/m.onnx"}
                }
            },
            "loopback",
        ),
        (
            {
                "predictor": {
                    "model": {"modelFormat": {"name": "onnx"}, "storageUri": "models/iris"}
                }
            },
            "'(none)'",
        ),
        (_with(storage={"endpoint": "http://169.254.169.254"}), "storage.endpoint"),
        (_with(storage={"endpoint": "minio:9000"}), "http(s)://"),
        (_with(versionPolicy={"policy": "specific"}), "needs at least one version"),
        (_with(versionPolicy={"policy": "latest", "versions": [1]}), "only used with policy"),
        (_with(versionPolicy={"policy": "specific", "versions": [0]}), "start at 1"),
        (_with(digests={"1": "abc"}), "digests[1]"),
        (_with(digests={"latest": "a" * 64}), "digests[latest]"),
        (_with(canary={}), "spec.modelfleet.canary"),
        (_with(canary={"storageUri": "ftp://x/y"}), "spec.modelfleet.canary.storageUri"),
        (_with(batching={"maxBatchSize": 0}), "maxBatchSize"),
        (
            _with(storage={"secretRef": {"name": "s"}, "accessKey": "AKIA"}),
            "accessKey: unknown field",
        ),
        (
            predictor(maxReplicas=3, scaleMetric="cpu") | {"modelfleet": {"autoscaler": "keda"}},
            "both HPA and KEDA",
        ),
    ],
)
def test_semantic_errors(spec: dict[str, Any], part: str) -> None:
    _fails(spec, part)


def test_consistent_autoscaler_choice_is_fine() -> None:
    spec = predictor(maxReplicas=3, scaleMetric="rps") | {"modelfleet": {"autoscaler": "keda"}}
    assert parse(isvc(spec)).spec.autoscaler == "keda"


def test_operator_owned_env_is_refused() -> None:
    model: dict[str, Any] = {"modelFormat": {"name": "onnx"}, "storageUri": "s3://a/b"}
    model["env"] = [{"name": "MODELFLEET_PORT", "value": "9000"}]
    _fails({"predictor": {"model": model}}, "MODELFLEET_PORT is set by the operator")


@pytest.mark.parametrize("name", ["Iris", "1iris", "iris_v2", "a" * 46, "iris-"])
def test_names_that_cannot_name_children(name: str) -> None:
    _fails(predictor(), "metadata.name", name=name)


def test_kserve_autoscaler_class_annotation_conflict() -> None:
    spec = predictor(maxReplicas=3, scaleMetric="cpu")
    _fails(spec, "both HPA and KEDA", annotations={"serving.kserve.io/autoscalerClass": "keda"})


def test_serverless_mode_is_rejected() -> None:
    _fails(
        predictor(),
        "deploymentMode",
        annotations={"serving.kserve.io/deploymentMode": "Serverless"},
    )


def test_missing_spec() -> None:
    with pytest.raises(SpecError, match="spec: missing"):
        parse({"metadata": {"name": "iris"}})
