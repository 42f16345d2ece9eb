"""Tiny ONNX models built with onnx.helper for tests: nothing is downloaded at test time.

Every builder returns the serialized model bytes; ``write_repository`` lays them out as a
model repository (``<root>/<version>/model.onnx``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    blob: bytes = model.SerializeToString()
    return blob


def add_constant(value: float, *, features: int = 4, dtype: int = TensorProto.FLOAT) -> bytes:
    """``output0 = input0 + value`` over a ``[batch, features]`` tensor (batch dynamic):
    versions built with different ``value`` give distinguishable answers."""
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    const = numpy_helper.from_array(np.full([features], value, dtype=np_dtype), "c")
    graph = helper.make_graph(
        [helper.make_node("Add", ["input0", "c"], ["output0"])],
        "add_constant",
        [helper.make_tensor_value_info("input0", dtype, ["batch", features])],
        [helper.make_tensor_value_info("output0", dtype, ["batch", features])],
        initializer=[const],
    )
    return _model(graph)


def identity(dtype: int, shape: list[int | str | None] | None = None) -> bytes:
    """``output0 = input0`` for any ONNX element type (the datatype round-trip tests)."""
    dims: list[int | str | None] = shape if shape is not None else ["batch", 3]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input0"], ["output0"])],
        "identity",
        [helper.make_tensor_value_info("input0", dtype, dims)],
        [helper.make_tensor_value_info("output0", dtype, dims)],
    )
    return _model(graph)


def two_in_two_out(*, features: int = 4) -> bytes:
    """``sum = a + b`` and ``diff = a - b`` over ``[batch, features]`` float32 tensors."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Sub", ["a", "b"], ["diff"]),
        ],
        "two_in_two_out",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", features]) for n in "ab"],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", features])
            for n in ("sum", "diff")
        ],
    )
    return _model(graph)


def mlp(sizes: list[int], *, seed: int = 0) -> bytes:
    """A ReLU MLP (``sizes[0] -> ... -> sizes[-1]``) with random weights, dynamic batch."""
    rng = np.random.default_rng(seed)
    nodes, inits, current = [], [], "input0"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        b = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(sizes) - 2
        out = "output0" if last else f"h{i}"
        nodes.append(
            helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [out if last else f"g{i}"])
        )
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", sizes[-1]])],
        initializer=inits,
    )
    return _model(graph)


def write_repository(root: Path, versions: dict[int, bytes]) -> Path:
    """Write ``{version: model bytes}`` as ``root/<version>/model.onnx``; returns ``root``."""
    for version, blob in versions.items():
        folder = root / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(blob)
    return root


def slow(steps: int = 16, size: int = 768) -> bytes:
    """``output0 = input0 + tiny`` after ``steps`` chained ``size``x``size`` MatMuls seeded by the
    input (so ONNX Runtime cannot fold them away): a model that takes a noticeable time per
    request, for drain and overload tests."""
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((size, size)).astype(np.float32) / size
    nodes = [
        helper.make_node("ReduceSum", ["input0"], ["seed"], keepdims=0),
        helper.make_node("Mul", ["w", "seed"], ["x0"]),
    ]
    nodes += [helper.make_node("MatMul", [f"x{i}", "w"], [f"x{i + 1}"]) for i in range(steps)]
    nodes += [
        helper.make_node("ReduceSum", [f"x{steps}"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["input0", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4])],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        ],
    )
    return _model(graph)


ELEMENT_TYPES: dict[str, int] = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}
"""Open Inference Protocol datatype -> ONNX element type."""


def echo_every_type() -> bytes:
    """``out_<D> = in_<D>`` for each of the 13 datatypes D, each ``[batch, 3]``: one request
    carries every datatype both ways (the client tests)."""
    names = list(ELEMENT_TYPES)
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"in_{d}"], [f"out_{d}"]) for d in names],
        "echo_every_type",
        [helper.make_tensor_value_info(f"in_{d}", ELEMENT_TYPES[d], ["batch", 3]) for d in names],
        [helper.make_tensor_value_info(f"out_{d}", ELEMENT_TYPES[d], ["batch", 3]) for d in names],
    )
    return _model(graph)
