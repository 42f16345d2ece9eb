"""The Open Inference Protocol's wire shapes, datatypes and the transport-neutral values the
data plane works on.

``codec.py`` turns HTTP bodies into ``InferRequest`` and ``InferResponse`` back into bodies;
``dataplane.py`` runs them. The wire format's description for the OpenAPI document at ``/docs``
is in ``openapi.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The datatype tables are the client's (one copy for both ends of the wire), re-exported for
# the runtime's modules: BYTES are numpy object arrays (of str, on the runtime's side).
from modelfleet_client.tensors import DATATYPES as DATATYPES
from modelfleet_client.tensors import NUMPY_TYPES as NUMPY_TYPES
from modelfleet_client.tensors import datatype_of as datatype_of

Arrays = dict[str, np.ndarray[Any, Any]]
"""Tensors by name: a request's inputs, a model's outputs."""

# ONNX Runtime's type strings -> Open Inference Protocol datatype.
ONNX_TYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model's signature; ``None`` marks a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int | None, ...]

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """Whether a concrete ``shape`` fits this (possibly dynamic) one."""
        if len(shape) != len(self.shape):
            return False
        for want, got in zip(self.shape, shape, strict=True):  # on every request: no generator
            if want is not None and want != got:
                return False
        return True

    def wire(self) -> dict[str, Any]:
        """Metadata form: dynamic dimensions are -1, as Triton reports them."""
        dims = [-1 if d is None else d for d in self.shape]
        return {"name": self.name, "datatype": self.datatype, "shape": dims}


@dataclass(slots=True)
class InferRequest:
    """A decoded inference request: input arrays already shaped and typed."""

    inputs: dict[str, np.ndarray[Any, Any]]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None
    """Names of the outputs asked for (None: all of them)."""
    binary_outputs: frozenset[str] = frozenset()
    """Outputs to send in the binary tensor extension instead of JSON."""


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray[Any, Any]]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
