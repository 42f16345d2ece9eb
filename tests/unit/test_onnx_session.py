"""The ONNX Runtime session options ``OnnxModel.load`` creates sessions with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelfleet_runtime.config import Settings
from modelfleet_runtime.models.onnx import OnnxModel, direct_run
from tests.helpers import onnx_models

DISABLE_PREPACKING = "session.disable_prepacking"


def config_entry(options: ort.SessionOptions, key: str) -> str | None:
    try:
        return str(options.get_session_config_entry(key))
    except RuntimeError:  # not set: ONNX Runtime's default
        return None


@pytest.mark.parametrize("prepack", [True, False])
def test_prepack_weights_reaches_the_session(tmp_path: Path, prepack: bool) -> None:
    """``prepack_weights false`` is in the options the session was created with (ONNX
    Runtime's own copy of them), and the model answers alike within float rounding."""
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_models.mlp([64, 256, 8]))
    settings = Settings(model_uri=str(path), prepack_weights=prepack)
    model = OnnxModel.load("m", 1, path, settings)
    assert config_entry(model.session.get_session_options(), DISABLE_PREPACKING) == (
        None if prepack else "1"
    )
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    reference = OnnxModel.load("m", 1, path, Settings(model_uri=str(path)))
    got = model.run({"input0": x})["output0"]
    np.testing.assert_allclose(got, reference.run({"input0": x})["output0"], rtol=1e-5, atol=1e-5)


def test_a_cpu_session_runs_without_the_python_wrappers_checks(tmp_path: Path) -> None:
    """``OnnxModel.run`` calls the C++ session's ``run`` on a CPU-only session, and answers
    bit for bit what the public ``InferenceSession.run`` answers."""
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_models.mlp([64, 256, 8]))
    model = OnnxModel.load("m", 1, path, Settings(model_uri=str(path)))
    assert model._run == model.session._sess.run
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    (public,) = model.session.run(["output0"], {"input0": x})
    assert model.run({"input0": x})["output0"].tobytes() == public.tobytes()


def test_a_missing_input_is_still_refused_by_onnx_runtime(tmp_path: Path) -> None:
    """The checks left out repeat ``signature.check_inputs``; were a request to reach the model
    without one, ONNX Runtime's C++ side still refuses it (the data plane's 500, no crash)."""
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_models.mlp([64, 8]))
    model = OnnxModel.load("m", 1, path, Settings(model_uri=str(path)))
    with pytest.raises(Exception, match="Missing Input: input0") as refused:
        model.run({})
    assert not isinstance(refused.value, ValueError)  # the Python wrapper's own refusal


class _GpuSession:
    """What ``direct_run`` reads of a session with another provider first."""

    def __init__(self) -> None:
        self._sess = object()

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def run(self, *_: object) -> list[object]:
        return []


def test_a_session_with_another_provider_keeps_the_public_run() -> None:
    """Its ``run`` retries a failed provider on the CPU once: that stays."""
    session = _GpuSession()
    assert direct_run(session) == session.run
