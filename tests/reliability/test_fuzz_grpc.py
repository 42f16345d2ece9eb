"""S1 over gRPC: hypothesis-generated ``ModelInferRequest`` messages (random models, versions,
names, datatypes, shapes, typed contents and raw contents) against a real ``grpc.aio`` server
on 127.0.0.1 over the real data plane. Every answer is OK (a request that happens to be valid)
or INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED with a message, never INTERNAL or
UNKNOWN, and the server keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from modelfleet_client.tensors import GRPC_CONTENTS
from modelfleet_runtime import grpc_api
from modelfleet_runtime.protocol import DATATYPES
from tests.helpers import onnx_models
from tests.helpers.runtime import loaded_app

from .test_fuzz import BODY_LIMIT, FUZZ

REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
CASES = 600


async def _channel(target: str) -> grpc.aio.Channel:
    """A channel bound to the running loop (grpc.aio takes the loop current at creation)."""
    return grpc.aio.insecure_channel(target)


class FuzzedGrpc:
    """Model ``m`` ([batch, 4] float32) behind a gRPC server, driven from a private loop."""

    def __init__(self, tmp: Path) -> None:
        root = onnx_models.write_repository(tmp / "m", {1: onnx_models.add_constant(1.0)})
        _, self.dataplane, metrics = loaded_app(
            "m", {1: root / "1" / "model.onnx"}, max_body_size=BODY_LIMIT, grpc_port=0
        )
        self.loop = asyncio.new_event_loop()
        self.server, port = self.loop.run_until_complete(
            grpc_api.start(self.dataplane.settings, self.dataplane)
        )
        self.channel = self.loop.run_until_complete(_channel(f"127.0.0.1:{port}"))
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.cases = 0

    def call(self, request: pb.ModelInferRequest) -> grpc.StatusCode:
        async def once() -> grpc.StatusCode:
            try:
                await self.stub.ModelInfer(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.details(), exc
                return exc.code()
            return grpc.StatusCode.OK

        self.cases += 1
        return self.loop.run_until_complete(once())

    def still_serving(self) -> None:
        request = pb.ModelInferRequest(model_name="m")
        request.inputs.add(name="input0", datatype="FP32", shape=[1, 4])
        request.inputs[0].contents.fp32_contents.extend([1, 2, 3, 4])

        async def once() -> pb.ModelInferResponse:  # the call is made inside the loop
            reply: pb.ModelInferResponse = await self.stub.ModelInfer(request, timeout=10)
            return reply

        reply = self.loop.run_until_complete(once())
        assert reply.model_name == "m" and len(reply.raw_output_contents) == 1

    def close(self) -> None:
        self.loop.run_until_complete(self.channel.close())
        self.loop.run_until_complete(self.server.stop(None))
        self.loop.run_until_complete(self.dataplane.aclose())
        self.loop.close()


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[FuzzedGrpc]:
    target = FuzzedGrpc(tmp_path)
    try:
        yield target
        target.still_serving()
    finally:
        target.close()


names = st.sampled_from(["input0", "input0", "x", ""]) | st.text(max_size=8)
datatypes = st.sampled_from(sorted(DATATYPES)) | st.text(max_size=6)
dims = st.integers(-3, 6) | st.integers(-(2**63), 2**63 - 1)
numbers = st.lists(st.integers(-(2**31), 2**31 - 1), max_size=12)


@st.composite
def contents(draw: st.DrawFn) -> pb.InferTensorContents:
    field = draw(st.sampled_from(sorted(set(GRPC_CONTENTS.values()))))
    out = pb.InferTensorContents()
    values: list[Any]
    if field == "bool_contents":
        values = draw(st.lists(st.booleans(), max_size=12))
    elif field in ("fp32_contents", "fp64_contents"):
        values = draw(st.lists(st.floats(width=32), max_size=12))
    elif field == "bytes_contents":
        values = draw(st.lists(st.binary(max_size=8), max_size=12))
    elif field in ("uint_contents", "uint64_contents"):
        values = draw(st.lists(st.integers(0, 2**32 - 1), max_size=12))
    else:
        values = draw(numbers)
    getattr(out, field).extend(values)
    return out


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(
        model_name=draw(st.sampled_from(["m", "m", "m", "other"]) | st.text(max_size=6)),
        model_version=draw(st.sampled_from(["", "", "1", "2", "0", "-1", "x"])),
        id=draw(st.text(max_size=6)),
    )
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(name=draw(names), datatype=draw(datatypes))
        tensor.shape.extend(draw(st.lists(dims, max_size=4)))
        if draw(st.booleans()):
            tensor.contents.CopyFrom(draw(contents()))
    if draw(st.integers(0, 3)) == 0:
        request.raw_input_contents.extend(draw(st.lists(st.binary(max_size=40), max_size=3)))
    for name in draw(st.lists(st.sampled_from(["output0", "y"]), max_size=2)):
        request.outputs.add(name=name)
    return request


def test_generated_infer_requests_are_refused_cleanly(fuzzed: FuzzedGrpc) -> None:
    seen: set[grpc.StatusCode] = set()

    @settings(FUZZ, max_examples=CASES)
    @given(request=infer_requests())
    def case(request: pb.ModelInferRequest) -> None:
        code = fuzzed.call(request)
        seen.add(code)
        assert code == grpc.StatusCode.OK or code in REFUSALS, (code, request)

    case()
    assert fuzzed.cases >= CASES, fuzzed.cases
    assert {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND} <= seen, seen
