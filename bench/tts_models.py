"""The generated models of ``bench/time_to_serve.py``: MLPs of about 10 MB, 200 MB and 1 GB.

Each is a chain of ``Gemm`` + ``Relu`` layers over a ``[batch, hidden]`` float32 input, so a
session does what a real one does (reads every weight, pre-packs the Gemm weights) and one
inference touches every byte. The largest keeps its weights in an external-data file
(``weights.bin``), as a model over protobuf's 2 GB limit must. Built with onnx.helper and numpy
(nothing is downloaded) into a cache folder outside the repository, once per shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelfleet" / "tts"


@dataclass(frozen=True)
class Shape:
    """One benchmark model: ``layers`` square Gemm layers of width ``hidden``."""

    label: str
    hidden: int
    layers: int
    external: bool

    @property
    def nbytes(self) -> int:
        """Bytes of weights and biases."""
        return 4 * self.layers * (self.hidden * self.hidden + self.hidden)

    @property
    def folder(self) -> Path:
        return CACHE / f"{self.label}-{self.hidden}x{self.layers}{'-ext' if self.external else ''}"


SHAPES = {
    "10MB": Shape("10MB", 1152, 2, external=False),
    "200MB": Shape("200MB", 4096, 3, external=False),
    "1GB": Shape("1GB", 8192, 4, external=True),
}


def build(shape: Shape) -> Path:
    """The model file of ``shape`` (made once; reused while its folder is whole)."""
    model_path = shape.folder / "model.onnx"
    done = shape.folder / ".complete"
    if done.is_file():
        return model_path
    shape.folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shape.hidden * 100 + shape.layers)
    nodes, inits, current = [], [], "input0"
    scale = np.float32(1.0 / np.sqrt(shape.hidden))
    for i in range(shape.layers):
        w = rng.standard_normal((shape.hidden, shape.hidden), dtype=np.float32) * scale
        b = rng.standard_normal(shape.hidden, dtype=np.float32) * np.float32(0.1)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        del w
        out = "output0" if i == shape.layers - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [f"g{i}"]))
        nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", shape.hidden])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", shape.hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    if shape.external:
        onnx.save_model(
            model,
            str(model_path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="weights.bin",
            size_threshold=0,
        )
    else:
        model_path.write_bytes(model.SerializeToString())
    done.touch()
    return model_path


def infer_body(shape: Shape) -> bytes:
    """A V2 JSON request of one row of zeros (every server under test accepts it)."""
    zeros = ",".join(["0"] * shape.hidden)
    return (
        f'{{"inputs":[{{"name":"input0","shape":[1,{shape.hidden}],"datatype":"FP32",'
        f'"data":[{zeros}]}}]}}'
    ).encode()
