"""``ModelRegistry`` readiness: the newest version answers at once, the server reports ready
only once the first pass over storage has tried every version the policy wants."""

from __future__ import annotations

from pathlib import Path

from modelfleet_runtime.config import Settings
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.models.registry import ModelRegistry
from tests.helpers import onnx_models


def test_ready_waits_for_the_first_pass_and_not_for_later_ones(tmp_path: Path) -> None:
    repo = onnx_models.write_repository(
        tmp_path / "adder", {v: onnx_models.add_constant(float(v)) for v in (1, 2, 3)}
    )
    settings = Settings(name="adder")
    load = {
        v: OnnxModel.load("adder", v, repo / str(v) / "model.onnx", settings) for v in (1, 2, 3)
    }
    registry = ModelRegistry("adder")
    registry.publish(load[3])
    assert registry.get("adder").version == 3  # unnamed requests are served already
    assert not registry.ready and not registry.became_ready.is_set()
    registry.publish(load[2])
    registry.settle()  # the first pass is over
    assert registry.ready and registry.became_ready.is_set()
    registry.publish(load[1])  # a later pass: readiness is not withdrawn meanwhile
    assert registry.ready and sorted(registry.versions) == [1, 2, 3]


def test_a_first_pass_that_loads_nothing_is_not_ready_until_a_version_serves(
    tmp_path: Path,
) -> None:
    repo = onnx_models.write_repository(tmp_path / "adder", {1: onnx_models.add_constant(1.0)})
    registry = ModelRegistry("adder")
    registry.settle()
    assert not registry.ready and not registry.became_ready.is_set()
    model = OnnxModel.load("adder", 1, repo / "1" / "model.onnx", Settings(name="adder"))
    registry.publish(model)
    assert registry.ready and registry.became_ready.is_set()


def test_a_refused_replacement_of_a_serving_version_is_reported_beside_it(
    tmp_path: Path,
) -> None:
    repo = onnx_models.write_repository(tmp_path / "adder", {1: onnx_models.add_constant(1.0)})
    registry = ModelRegistry("adder")
    registry.publish(OnnxModel.load("adder", 1, repo / "1" / "model.onnx", Settings()))
    registry.mark_failed(1, "IntegrityError", "version 1 file 'model.onnx' differs")
    assert registry.get("adder", 1).version == 1  # still serving
    (status,) = [s.wire() for s in registry.statuses()]
    assert status["state"] == "READY" and status["reason"] == "IntegrityError"
    assert status["message"].endswith("their replacement was refused: version 1 file "
                                      "'model.onnx' differs")  # fmt: skip
    registry.mark_failed(2, "NotFound", "storage has no version 2")
    assert [s.wire()["state"] for s in registry.statuses()] == ["READY", "UNAVAILABLE"]
