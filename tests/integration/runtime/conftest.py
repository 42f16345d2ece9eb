"""Fixtures: the runtime's real app, in-process, serving tiny models built by onnx.helper, and
its real gRPC server on 127.0.0.1 called through the generated stub."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from modelfleet_runtime import grpc_api, grpc_h2
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.metrics import Metrics
from tests.helpers import onnx_models
from tests.helpers.runtime import GRPC_TRANSPORTS, InProcess, loaded_app, open_in_process

OpenClient = Callable[..., AbstractAsyncContextManager[InProcess]]


@pytest.fixture
def open_client(tmp_path: Path) -> OpenClient:
    """``async with open_client(name, {version: model_bytes}, **settings) as served``."""
    return functools.partial(open_in_process, tmp_path)


@pytest.fixture
async def adder(open_client: OpenClient) -> AsyncIterator[InProcess]:
    """Model 'adder': output0 = input0 + version, [batch, 4] float32, versions 1 and 2."""
    versions = {1: onnx_models.add_constant(1.0), 2: onnx_models.add_constant(2.0)}
    async with open_client("adder", versions) as served:
        yield served


@dataclass
class Served:
    stub: Any  # pb_grpc.GRPCInferenceServiceStub (generated, untyped)
    dataplane: DataPlane
    metrics: Metrics
    channel: grpc.aio.Channel


Open = Callable[..., AbstractAsyncContextManager[Served]]


@pytest.fixture(params=GRPC_TRANSPORTS)
def open_grpc(tmp_path: Path, request: pytest.FixtureRequest) -> Open:
    """A gRPC server over a loaded data plane, on each transport (``--grpc-transport``)."""

    @asynccontextmanager
    async def open_(
        name: str, versions: dict[int, bytes], **settings: Any
    ) -> AsyncIterator[Served]:
        root = onnx_models.write_repository(tmp_path / name, versions)
        paths = {v: root / str(v) / "model.onnx" for v in versions}
        transport = request.param
        _, dataplane, metrics = loaded_app(
            name, paths, grpc_port=0, grpc_transport=transport, **settings
        )
        server: grpc_api.GrpcServer
        if transport == "h2":
            server = await grpc_h2.start(dataplane.settings, dataplane)
            port = server.port
        else:
            server, port = await grpc_api.start(dataplane.settings, dataplane)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
                yield Served(stub, dataplane, metrics, channel)
        finally:
            await server.stop(None)
            await dataplane.aclose()

    return open_
