"""The Open Inference Protocol over gRPC: a real ``grpc.aio`` server on 127.0.0.1 over the same
data plane as HTTP, called through the generated client stub (as KServe's and Triton's gRPC
clients call it): every RPC and datatype, typed and raw tensors, errors as status codes,
bearer tokens, and the request metrics."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.protocol import DATATYPES
from tests.helpers import onnx_models
from tests.integration.runtime.conftest import Open
from tests.integration.runtime.test_v2_protocol import DATATYPE_CASES


def fp32(name: str, values: list[float], shape: list[int]) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(
        name=name,
        datatype="FP32",
        shape=shape,
        contents=pb.InferTensorContents(fp32_contents=values),
    )


def outputs(reply: pb.ModelInferResponse) -> dict[str, np.ndarray[Any, Any]]:
    """Raw outputs as arrays (BYTES as lists of bytes)."""
    found: dict[str, Any] = {}
    for tensor, raw in zip(reply.outputs, reply.raw_output_contents, strict=True):
        if tensor.datatype == "BYTES":
            items, offset = [], 0
            while offset < len(raw):
                (size,) = struct.unpack_from("<I", raw, offset)
                items.append(raw[offset + 4 : offset + 4 + size])
                offset += 4 + size
            found[tensor.name] = items
        else:
            dtype = DATATYPES[tensor.datatype].newbyteorder("<")
            found[tensor.name] = np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.shape))
    return found


async def test_health_metadata_and_readiness(open_grpc: Open) -> None:
    versions = {1: onnx_models.add_constant(1.0), 2: onnx_models.add_constant(2.0)}
    async with open_grpc("adder", versions) as served:
        stub = served.stub
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
        server = await stub.ServerMetadata(pb.ServerMetadataRequest())
        assert server.name == "modelfleet" and "binary_tensor_data" in server.extensions
        meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name="adder"))
        assert (list(meta.versions), meta.platform) == (["1", "2"], "onnxruntime_onnx")
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("input0", "FP32", [-1, 4])
        ]
        one = await stub.ModelMetadata(pb.ModelMetadataRequest(name="adder", version="1"))
        assert list(one.versions) == ["1"]
        assert (await stub.ModelReady(pb.ModelReadyRequest(name="adder", version="2"))).ready
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.ModelReady(pb.ModelReadyRequest(name="other"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_infer_typed_and_raw_give_the_same_answer(open_grpc: Open) -> None:
    versions = {1: onnx_models.add_constant(1.0), 2: onnx_models.add_constant(2.0)}
    async with open_grpc("adder", versions) as served:
        typed = await served.stub.ModelInfer(
            pb.ModelInferRequest(
                model_name="adder", id="r-1", inputs=[fp32("input0", [1, 2, 3, 4] * 2, [2, 4])]
            )
        )
        assert (typed.model_name, typed.model_version, typed.id) == ("adder", "2", "r-1")
        np.testing.assert_array_equal(
            outputs(typed)["output0"], np.array([[3, 4, 5, 6]] * 2, dtype=np.float32)
        )
        raw = pb.ModelInferRequest(model_name="adder", model_version="1")
        raw.inputs.add(name="input0", datatype="FP32", shape=[1, 4])
        raw.raw_input_contents.append(np.array([1, 2, 3, 4], dtype="<f4").tobytes())
        first = await served.stub.ModelInfer(raw)
        assert first.model_version == "1"
        np.testing.assert_array_equal(outputs(first)["output0"], [[2, 3, 4, 5]])


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
async def test_compressed_requests_are_answered(
    open_grpc: Open, compression: grpc.Compression
) -> None:
    """A client that compresses its messages (grpcio's ``compression=``, tritonclient's
    ``compression_algorithm``) is answered as one that does not."""
    async with open_grpc("adder", {1: onnx_models.add_constant(1.0)}) as served:
        request = pb.ModelInferRequest(
            model_name="adder", inputs=[fp32("input0", [1, 2, 3, 4] * 64, [64, 4])]
        )
        reply = await served.stub.ModelInfer(request, compression=compression)
        np.testing.assert_array_equal(
            outputs(reply)["output0"], np.array([[2, 3, 4, 5]] * 64, dtype=np.float32)
        )


async def test_requested_outputs_only(open_grpc: Open) -> None:
    async with open_grpc("pair", {1: onnx_models.two_in_two_out()}) as served:
        request = pb.ModelInferRequest(
            model_name="pair",
            inputs=[fp32("a", [5, 5, 5, 5], [1, 4]), fp32("b", [1, 2, 3, 4], [1, 4])],
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="diff")],
        )
        reply = await served.stub.ModelInfer(request)
        assert list(outputs(reply)) == ["diff"]
        np.testing.assert_array_equal(outputs(reply)["diff"], [[4, 3, 2, 1]])


def counted(metrics: Metrics, status: str) -> float:
    """gRPC requests counted with ``status`` (HTTP's numbers), over every model and version."""
    family = next(f for f in metrics.requests.collect() if f.name == "modelfleet_requests")
    return sum(
        sample.value
        for sample in family.samples
        if sample.name.endswith("_total")
        and sample.labels["protocol"] == "grpc"
        and sample.labels["status"] == status
    )


TYPED_FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


@pytest.mark.parametrize(("onnx_type", "datatype", "data"), DATATYPE_CASES)
async def test_every_datatype_round_trips(
    open_grpc: Open, onnx_type: int, datatype: str, data: list[Any]
) -> None:
    async with open_grpc("echo", {1: onnx_models.identity(onnx_type)}) as served:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="input0", datatype=datatype, shape=[1, 3]
        )
        request = pb.ModelInferRequest(model_name="echo")
        if datatype == "FP16":  # no typed field: raw only, as the protocol says
            request.raw_input_contents.append(np.array(data, dtype="<f2").tobytes())
        else:
            values = [v.encode() for v in data] if datatype == "BYTES" else data
            getattr(tensor.contents, TYPED_FIELDS[datatype]).extend(values)
        request.inputs.append(tensor)
        reply = await served.stub.ModelInfer(request)
        (out,) = reply.outputs
        assert (out.datatype, list(out.shape)) == (datatype, [1, 3])
        got = outputs(reply)["output0"]
        expected = [v.encode() for v in data] if datatype == "BYTES" else [data]
        if datatype == "BYTES":
            assert got == expected
        else:
            assert got.tolist() == expected


Spoil = Callable[[pb.ModelInferRequest], object]
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


def _huge_beside_zero(r: pb.ModelInferRequest) -> None:
    r.inputs[0].shape[:] = [0, 6, 2**62]  # 0 elements, but no array can have that shape


def _int32_values(r: pb.ModelInferRequest) -> None:
    r.inputs[0].datatype = "INT32"
    r.inputs[0].contents.int_contents.extend([1] * 4)


BAD: list[tuple[str, Spoil, grpc.StatusCode, str]] = [
    ("unknown model", lambda r: setattr(r, "model_name", "nope"), NOT_FOUND, "nope"),
    ("unknown version", lambda r: setattr(r, "model_version", "9"), NOT_FOUND, "9"),
    ("typed field of another type", lambda r: setattr(r.inputs[0], "datatype", "INT32"),
     INVALID, "int_contents has 0"),
    ("wrong datatype", _int32_values, INVALID, "INT32"),
    ("unknown datatype", lambda r: setattr(r.inputs[0], "datatype", "FP8"), INVALID, "FP8"),
    ("count mismatch", lambda r: r.inputs[0].shape.__setitem__(0, 2), INVALID, "8 elements"),
    ("wrong name", lambda r: setattr(r.inputs[0], "name", "x"), INVALID, "x"),
    ("raw count", lambda r: r.raw_input_contents.append(b"1234"), INVALID, "raw_input_contents"),
    ("negative dim", lambda r: r.inputs[0].shape.__setitem__(0, -1), INVALID, "negative"),
    ("zero dim beside huge ones", _huge_beside_zero, INVALID, "dimensions larger than"),
    ("unknown output", lambda r: r.outputs.add(name="z"), INVALID, "z"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "spoil", "code", "message"), BAD, ids=[b[0] for b in BAD])
async def test_bad_requests_get_a_status_code_and_the_server_stays_up(
    open_grpc: Open,
    case: str,
    spoil: Spoil,
    code: grpc.StatusCode,
    message: str,
) -> None:
    async with open_grpc("adder", {1: onnx_models.add_constant(1.0)}) as served:
        request = pb.ModelInferRequest(model_name="adder", inputs=[fp32("input0", [1] * 4, [1, 4])])
        spoil(request)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.stub.ModelInfer(request)
        assert refused.value.code() == code, (case, refused.value.details())
        assert message in (refused.value.details() or ""), refused.value.details()
        fine = pb.ModelInferRequest(model_name="adder", inputs=[fp32("input0", [1] * 4, [1, 4])])
        assert outputs(await served.stub.ModelInfer(fine))["output0"].tolist() == [[2.0] * 4]
        status = "404" if code == grpc.StatusCode.NOT_FOUND else "400"
        assert counted(served.metrics, status) == 1
        assert counted(served.metrics, "200") == 1


async def test_bearer_tokens_guard_every_call_but_health(open_grpc: Open) -> None:
    async with open_grpc(
        "adder", {1: onnx_models.add_constant(1.0)}, auth_token="s3cret"
    ) as served:
        request = pb.ModelInferRequest(model_name="adder", inputs=[fp32("input0", [1] * 4, [1, 4])])
        assert (await served.stub.ServerReady(pb.ServerReadyRequest())).ready
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await served.stub.ModelInfer(request, metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError):
                await served.stub.ModelMetadata(
                    pb.ModelMetadataRequest(name="adder"), metadata=metadata
                )
        good = (("authorization", "Bearer s3cret"),)
        reply = await served.stub.ModelInfer(request, metadata=good)
        assert outputs(reply)["output0"].tolist() == [[2.0] * 4]


async def test_a_full_server_answers_unavailable(open_grpc: Open) -> None:
    async with open_grpc("adder", {1: onnx_models.add_constant(1.0)}) as served:
        served.dataplane.draining = True  # what SIGTERM sets
        request = pb.ModelInferRequest(model_name="adder", inputs=[fp32("input0", [1] * 4, [1, 4])])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.stub.ModelInfer(request)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not (await served.stub.ServerReady(pb.ServerReadyRequest())).ready
