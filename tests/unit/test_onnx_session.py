"""The ONNX Runtime session options ``OnnxModel.load`` creates sessions with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelfleet_runtime.config import Settings
from modelfleet_runtime.models.onnx import OnnxModel
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
