"""Servers the client tests call: real ``modelfleet serve`` processes on 127.0.0.1 (HTTP and
gRPC), started once per test session and shared, since no test changes them.

- ``every``: echoes one ``[batch, 3]`` tensor of each of the 13 datatypes (in_D -> out_D).
- ``adder``: ``output0 = input0 + version`` over ``[batch, 4]`` FP32, versions 1 and 2 both
  served, behind the bearer token ``TOKEN``.
- ``big``: the identity over ``[batch, 3, 224, 224]`` FP32 (an image-sized tensor).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto

from modelfleet_client.tensors import DATATYPES
from tests.helpers import onnx_models
from tests.helpers.runtime import free_port, serve_process

TOKEN = "client-test-token"
VALUES: dict[str, list[Any]] = {
    "BOOL": [True, False, True],
    "UINT8": [0, 7, 255],
    "UINT16": [0, 7, 65535],
    "UINT32": [0, 7, 2**32 - 1],
    "UINT64": [0, 7, 2**64 - 1],
    "INT8": [-128, 0, 127],
    "INT16": [-(2**15), 0, 2**15 - 1],
    "INT32": [-(2**31), 0, 2**31 - 1],
    "INT64": [-(2**63), 0, 2**63 - 1],
    "FP16": [0.5, -1.0, 65504.0],
    "FP32": [0.5, -1.25, 3.4e38],
    "FP64": [0.1, -1e300, 3.0],
    "BYTES": [b"a", "h\u00e9llo".encode(), b""],
}
"""Three values per datatype, the extremes included."""


@dataclass(frozen=True)
class Server:
    name: str
    http: str
    grpc: str

    def url(self, transport: str) -> str:
        return self.grpc if transport == "grpc" else self.http


def tensor(datatype: str, rows: int = 1) -> np.ndarray[Any, Any]:
    """``rows`` copies of ``VALUES[datatype]``, a ``[rows, 3]`` array."""
    if datatype == "BYTES":
        array = np.empty((rows, 3), dtype=object)
        array[:] = [VALUES["BYTES"]] * rows
        return array
    return np.tile(np.array(VALUES[datatype], dtype=DATATYPES[datatype]), (rows, 1))


def every_inputs(rows: int = 1, mark: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    """One input of each datatype; ``mark`` goes into the INT64 one (to tell calls apart)."""
    inputs = {f"in_{d}": tensor(d, rows) for d in VALUES}
    inputs["in_INT64"][:, 1] = mark
    return inputs


def assert_echoed(outputs: dict[str, np.ndarray[Any, Any]], inputs: dict[str, Any]) -> None:
    """Every output equals its input: same dtype, shape and values."""
    assert sorted(outputs) == sorted(k.replace("in_", "out_") for k in inputs)
    for name, sent in inputs.items():
        got = outputs[name.replace("in_", "out_")]
        assert (got.dtype, got.shape) == (sent.dtype, sent.shape), name
        assert got.tolist() == sent.tolist(), name


def _serve(tmp: Path, name: str, versions: dict[int, bytes], *args: str) -> Iterator[Server]:
    repo = onnx_models.write_repository(tmp / name, versions)
    grpc_port = free_port()
    flags = ["--model-uri", str(repo), "--grpc-port", str(grpc_port), "--max-concurrency", "1000"]
    with serve_process(tmp, *flags, *args) as served:
        yield Server(name, served.url, f"grpc://127.0.0.1:{grpc_port}")


@pytest.fixture(scope="session")
def every(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("every")
    yield from _serve(tmp, "every", {1: onnx_models.echo_every_type()})


@pytest.fixture(scope="session")
def adder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("adder")
    versions = {1: onnx_models.add_constant(1.0), 2: onnx_models.add_constant(2.0)}
    yield from _serve(tmp, "adder", versions, "--version-policy", "all", "--auth-token", TOKEN)


@pytest.fixture(scope="session")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("big")
    model = onnx_models.identity(TensorProto.FLOAT, ["batch", 3, 224, 224])
    yield from _serve(tmp, "big", {1: model})
