"""A request checked against the model's signature before anything runs: every input by name,
with the datatype and a shape the model accepts, and only outputs the model has. Each problem
is a 400 naming what was expected and what arrived, Triton style. ``dataplane.DataPlane``
calls these for every transport; ``openapi_signature.py`` states the same rules in the API
document.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelfleet_runtime.errors import BadRequestError
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.protocol import Arrays, TensorSpec, datatype_of


def check_inputs(model: OnnxModel, inputs: Arrays) -> None:
    """Raise a 400 naming what was expected and what arrived, Triton style."""
    expected = model.inputs
    if inputs.keys() != expected.keys():
        missing = sorted(expected.keys() - inputs.keys())
        extra = sorted(inputs.keys() - expected.keys())
        detail = []
        if missing:
            detail.append(f"missing required input(s) {missing}")
        if extra:
            detail.append(f"unexpected input(s) {extra}")
        raise BadRequestError(
            f"expected {len(expected)} inputs but got {len(inputs)}: " + "; ".join(detail)
        )
    for name, array in inputs.items():
        _check_input(expected[name], array)


def _check_input(spec: TensorSpec, array: np.ndarray[Any, Any]) -> None:
    got = datatype_of(array)
    if got != spec.datatype:
        raise BadRequestError(f"input '{spec.name}': expected datatype {spec.datatype}, got {got}")
    if not spec.accepts(array.shape):
        raise BadRequestError(
            f"input '{spec.name}': expected shape {spec.wire()['shape']}, got {list(array.shape)}"
        )


def check_outputs(model: OnnxModel, outputs: list[str] | None) -> None:
    if outputs is None:
        return
    unknown = sorted(set(outputs) - model.outputs.keys())
    if unknown:
        raise BadRequestError(
            f"unknown output(s) {unknown}; model '{model.name}' has {sorted(model.outputs)}"
        )
