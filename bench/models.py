"""Builds the benchmark's ONNX models with onnx.helper (nothing is downloaded) and their
request bodies, into bench/.work/. Called by ``bench/run.py``; runs in the bench venv.

Models: MLP-small 64->256->256->10, MLP-wide 512->2048->2048->10 (dynamic batch), and a small
convolutional model over a 1x3x224x224 float32 image. Every model has one input ``input0`` and
one output ``output0``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass(frozen=True)
class BenchModel:
    name: str
    path: Path
    input_shape: tuple[int, ...]  # of one benchmark request (batch 1)


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def _mlp(sizes: list[int], path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    nodes, inits, current = [], [], "input0"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        b = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(sizes) - 2
        gemm_out = "output0" if last else f"g{i}"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"h{i}"]))
            current = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", sizes[-1]])],
        initializer=inits,
    )
    _save(graph, path)


def _conv(path: Path, seed: int) -> None:
    """Conv 3->8 (3x3, stride 2) -> ReLU -> global average pool -> flatten -> Gemm 8->10."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32), "cw"),
        numpy_helper.from_array(np.zeros(8, np.float32), "cb"),
        numpy_helper.from_array(rng.standard_normal((8, 10)).astype(np.float32), "fw"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fb"),
    ]
    nodes = [
        helper.make_node("Conv", ["input0", "cw", "cb"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    _save(graph, path)


def build(work: Path) -> dict[str, BenchModel]:
    root = work / "models"
    models = {
        "mlp_small": BenchModel("mlp_small", root / "mlp_small" / "model.onnx", (1, 64)),
        "mlp_wide": BenchModel("mlp_wide", root / "mlp_wide" / "model.onnx", (1, 512)),
        "conv": BenchModel("conv", root / "conv" / "model.onnx", (1, 3, 224, 224)),
    }
    _mlp([64, 256, 256, 10], models["mlp_small"].path, seed=1)
    _mlp([512, 2048, 2048, 10], models["mlp_wide"].path, seed=2)
    _conv(models["conv"].path, seed=3)
    return models


def request_input(model: BenchModel) -> np.ndarray:
    """The one input every request of a scenario sends (fixed seed: answers are checkable)."""
    rng = np.random.default_rng(42)
    return rng.standard_normal(model.input_shape).astype(np.float32)


def json_body(array: np.ndarray) -> bytes:
    """An Open Inference Protocol V2 JSON request (what all three servers accept)."""
    tensor = {
        "name": "input0",
        "shape": list(array.shape),
        "datatype": "FP32",
        "data": array.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()


def grpc_body(model: str, array: np.ndarray) -> bytes:
    """A gRPC ModelInferRequest in protobuf's JSON form, for ghz (``--data-file``): the numbers
    in ``contents.fp32_contents``, the typed field every gRPC server of the protocol reads."""
    tensor = {
        "name": "input0",
        "shape": list(array.shape),
        "datatype": "FP32",
        "contents": {"fp32_contents": array.ravel().tolist()},
    }
    return json.dumps({"model_name": model, "inputs": [tensor]}).encode()


def binary_body(array: np.ndarray) -> tuple[bytes, int]:
    """The binary tensor extension: a JSON header then the raw little-endian tensor bytes.
    Returns (body, Inference-Header-Content-Length)."""
    raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "input0",
                "shape": list(array.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "output0", "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + raw, len(head)
