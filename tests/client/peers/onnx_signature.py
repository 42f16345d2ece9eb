"""What both peer servers (``kserve_onnx.py``, ``mlserver_onnx.py``) need beyond their
framework: an ONNX model's signature as Open Inference Protocol metadata, and BYTES the way
ONNX Runtime takes them. Runs in the peers' venvs: the servers import it from beside them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

ONNX_TYPES = {
    "tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(int8)": "INT8",
    "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}  # fmt: skip


def signature(args: Iterable[Any]) -> list[dict[str, Any]]:
    """ONNX Runtime's inputs or outputs as ``{"name", "datatype", "shape"}`` (-1: dynamic)."""
    return [
        {
            "name": a.name,
            "datatype": ONNX_TYPES[a.type],
            "shape": [d if isinstance(d, int) else -1 for d in a.shape],
        }
        for a in args
    ]


def strings(values: Iterable[Any], shape: Iterable[int]) -> np.ndarray[Any, Any]:
    """BYTES elements (bytes or str) as the object array of str ONNX Runtime takes."""
    flat = [v.decode() if isinstance(v, bytes) else v for v in values]
    return np.array(flat, dtype=object).reshape(tuple(shape))
