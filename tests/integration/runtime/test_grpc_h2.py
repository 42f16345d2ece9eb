"""What the HTTP/2 transport (``grpc_h2``, ``--grpc-transport h2``) adds to the RPCs that
``test_grpc.py`` runs on both transports: gRPC's own layer over HTTP/2 (framing, statuses,
``grpc-timeout``, unknown methods, compression and non-gRPC requests refused) and the stream
budget that ends connections before zttp's cap, without a failed call."""

from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Any, cast

import grpc
import pytest

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_runtime import grpc_h2, h2_protocol
from modelfleet_runtime.config import Settings
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.grpc_api import InferenceServicer
from tests.helpers import onnx_models
from tests.integration.runtime.conftest import Open

h2_only = pytest.mark.parametrize("open_grpc", ["h2"], indirect=True)


def infer_request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="adder")
    request.inputs.add(name="input0", datatype="FP32", shape=[1, 4])
    request.inputs[0].contents.fp32_contents.extend([1, 2, 3, 4])
    return request


@h2_only
async def test_connections_end_gracefully_after_their_stream_budget(
    open_grpc: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a budget of 20 streams, 300 calls at 8 at a time on one channel use several
    connections, and not one call fails."""
    monkeypatch.setattr(h2_protocol.StreamBudgetProtocol, "budget", 20)
    opened: list[object] = []
    connection_made = h2_protocol.StreamBudgetProtocol.connection_made

    def counting(self: Any, transport: Any) -> None:
        opened.append(self)
        connection_made(self, transport)

    monkeypatch.setattr(h2_protocol.StreamBudgetProtocol, "connection_made", counting)
    async with open_grpc("adder", {1: onnx_models.add_constant(1.0)}) as served:
        request, failures = infer_request(), []

        async def caller() -> None:
            for _ in range(300 // 8):
                try:
                    reply = await served.stub.ModelInfer(request, timeout=30)
                    assert reply.model_name == "adder"
                except grpc.aio.AioRpcError as exc:
                    failures.append(exc)

        await asyncio.gather(*(caller() for _ in range(8)))
    assert failures == []
    assert len(opened) >= 300 // 8 * 8 // 20 - 1  # a new connection about every 20 calls


@h2_only
async def test_an_unknown_method_is_unimplemented(open_grpc: Open) -> None:
    async with open_grpc("adder", {1: onnx_models.add_constant(1.0)}) as served:
        call: Any = served.channel.unary_unary("/inference.GRPCInferenceService/ModelConfig")
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call(b"", timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "unknown method" in (failed.value.details() or "")


@pytest.fixture
def stuck_infer(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """``DataPlane.infer`` never returning: events set when it starts and when it is ended."""
    started, ended = asyncio.Event(), asyncio.Event()

    async def stuck(*_: Any) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    monkeypatch.setattr(DataPlane, "infer", stuck)
    return started, ended


@h2_only
async def test_the_deadline_ends_the_work_on_the_server(
    open_grpc: Open, stuck_infer: tuple[asyncio.Event, asyncio.Event]
) -> None:
    """A call past its ``grpc-timeout`` is cancelled on the server too, not only abandoned by
    the client."""
    started, ended = stuck_infer
    async with open_grpc("adder", {1: onnx_models.add_constant(1.0)}) as served:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await served.stub.ModelInfer(infer_request(), timeout=0.5)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert started.is_set()
        await asyncio.wait_for(ended.wait(), 10)


@h2_only
async def test_a_call_the_client_cancels_is_cancelled_on_the_server(
    open_grpc: Open, stuck_infer: tuple[asyncio.Event, asyncio.Event]
) -> None:
    """No deadline: the client's cancel (RST_STREAM) alone ends the work, as on grpc.aio."""
    started, ended = stuck_infer
    async with open_grpc("adder", {1: onnx_models.add_constant(1.0)}) as served:
        call = served.stub.ModelInfer(infer_request())
        await asyncio.wait_for(started.wait(), 10)
        call.cancel()
        await asyncio.wait_for(ended.wait(), 10)
        assert served.dataplane.in_flight == 0


def test_metadata_as_grpc_aio_gives_it() -> None:
    headers = [
        (b"content-type", b"application/grpc"), (b"te", b"trailers"), (b"grpc-timeout", b"1S"),
        (b"traceparent", b"a"), (b"traceparent", b"b"), (b"trace-bin", b"AAE"),
    ]  # fmt: skip
    assert grpc_h2.metadata_of(headers) == (
        ("traceparent", "a"),
        ("traceparent", "b"),
        ("trace-bin", b"\0\1"),
    )


class Recorder:
    """An ASGI ``send`` keeping the status, the body and the trailers."""

    def __init__(self) -> None:
        self.status, self.body = 0, b""
        self.trailers: dict[bytes, bytes] = {}

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
        else:
            self.trailers = dict(message["headers"])


async def call_app(
    body: bytes, headers: list[tuple[bytes, bytes]] | None = None, chunk: int = 0
) -> Recorder:
    """``GrpcApp`` in-process on a ServerLive call (no model needed); the body in ``chunk``-byte
    pieces, or whole."""
    live = cast(DataPlane, _Live())  # ServerLive asks nothing else of a data plane
    app = grpc_h2.GrpcApp(InferenceServicer(live, None), max_message=1024)
    scope = {
        "type": "http", "method": "POST", "path": "/inference.GRPCInferenceService/ServerLive",
        "headers": headers if headers is not None else [(b"content-type", b"application/grpc")],
    }  # fmt: skip

    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]

    async def receive() -> dict[str, Any]:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    sent = Recorder()
    await app(scope, receive, sent)
    return sent


class _Live:
    """The one thing ServerLive asks of a data plane."""

    settings = Settings(max_body_size=1024)

    def live(self) -> bool:
        return True


def framed(message: bytes, compressed: int = 0) -> bytes:
    return bytes([compressed]) + struct.pack(">I", len(message)) + message


async def test_the_framing_and_its_refusals() -> None:
    ok = await call_app(framed(pb.ServerLiveRequest().SerializeToString()))
    assert ok.trailers[b"grpc-status"] == b"0"
    assert pb.ServerLiveResponse.FromString(ok.body[5:]).live
    compressed = await call_app(framed(b"", compressed=1))  # and no grpc-encoding
    assert compressed.trailers[b"grpc-status"] == b"13"  # INTERNAL
    two = await call_app(framed(b"") + framed(b""))
    assert two.trailers[b"grpc-status"] == b"13"  # INTERNAL, as grpc-java answers it
    cut = await call_app(framed(b"\0" * 10)[:-3])
    assert (cut.trailers[b"grpc-status"], cut.trailers[b"grpc-message"]) == (
        b"13",
        b"request message cut short",
    )
    chunked = await call_app(framed(pb.ServerLiveRequest().SerializeToString()), chunk=1)
    assert chunked.trailers[b"grpc-status"] == b"0"
    large = await call_app(framed(b"\0" * 2000))
    assert large.trailers[b"grpc-status"] == b"8"  # RESOURCE_EXHAUSTED
    empty = await call_app(b"")
    assert empty.trailers[b"grpc-status"] == b"13"  # INTERNAL
    timeout = [(b"content-type", b"application/grpc"), (b"grpc-timeout", b"soon")]
    malformed = await call_app(framed(b""), timeout)
    assert malformed.trailers[b"grpc-status"] == b"13"
    assert b"grpc-timeout" in malformed.trailers[b"grpc-message"]
    not_grpc = await call_app(b"{}", [(b"content-type", b"application/json")])
    assert (not_grpc.status, not_grpc.trailers) == (415, {})


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (b"100m", 0.1),
        (b"5S", 5.0),
        (b"2M", 120.0),
        (b"1H", 3600.0),
        (b"250u", 250e-6),
        (b"12345678n", 0.012345678),
    ],
)
def test_grpc_timeout_values(header: bytes, seconds: float) -> None:
    assert grpc_h2.timeout_of(header) == pytest.approx(seconds)
    assert grpc_h2.timeout_of(None) is None


@pytest.mark.parametrize(
    "header", [b"1X", b"S", b"-1S", b"123456789S", b"1.5S", "²S".encode("latin-1")]
)
def test_malformed_grpc_timeouts_are_refused(header: bytes) -> None:
    with pytest.raises(grpc_h2._Aborted, match="malformed grpc-timeout"):
        grpc_h2.timeout_of(header)


@pytest.mark.parametrize("slot", [True, False], ids=["call slot", "no slot"])
async def test_the_server_answers_deadline_exceeded_itself(slot: bool) -> None:
    """A call still unanswered at its ``grpc-timeout`` gets DEADLINE_EXCEEDED from the server
    (here its message never comes): through the stream's ``Call`` slot (a timer, as under
    ``StreamBudgetProtocol``) or, without one, a timeout context; the task is not left
    cancelled."""
    live = cast(DataPlane, _Live())
    app = grpc_h2.GrpcApp(InferenceServicer(live, None), max_message=1024)
    scope: dict[str, Any] = {
        "type": "http", "method": "POST", "path": "/inference.GRPCInferenceService/ServerLive",
        "headers": [(b"content-type", b"application/grpc"), (b"grpc-timeout", b"50m")],
    }  # fmt: skip
    if slot:
        scope[h2_protocol.CALL] = h2_protocol.Call()

    async def never() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    sent = Recorder()
    task = asyncio.ensure_future(app(scope, never, sent))
    await asyncio.wait_for(task, 10)
    assert (sent.trailers[b"grpc-status"], sent.trailers[b"grpc-message"]) == (
        b"4",  # DEADLINE_EXCEEDED
        b"deadline exceeded",
    )
    assert task.cancelling() == 0


def deflated(data: bytes, wbits: int) -> bytes:
    squeezer = zlib.compressobj(wbits=wbits)
    return squeezer.compress(data) + squeezer.flush()


async def test_compressed_messages_and_their_refusals() -> None:
    """gzip and deflate (zlib's format, as gRPC means it) are taken, bounded by the limit on
    the decompressed size (a small bomb is refused); other encodings, a compressed message
    without one, and broken or cut compressed data get the statuses grpcio gives."""
    live = pb.ServerLiveRequest().SerializeToString() + b"\x08\x00"  # an unknown field: bytes
    for encoding, wbits in ((b"gzip", 31), (b"deflate", 15)):
        headers = [(b"content-type", b"application/grpc"), (b"grpc-encoding", encoding)]
        ok = await call_app(framed(deflated(live, wbits), compressed=1), headers)
        assert ok.trailers[b"grpc-status"] == b"0", encoding
        assert pb.ServerLiveResponse.FromString(ok.body[5:]).live
        bomb = await call_app(framed(deflated(b"\0" * 5000, wbits), compressed=1), headers)
        assert bomb.trailers[b"grpc-status"] == b"8", encoding  # RESOURCE_EXHAUSTED
        cut = await call_app(framed(deflated(live * 50, wbits)[:-6], compressed=1), headers)
        assert cut.trailers[b"grpc-status"] == b"13", encoding  # INTERNAL
        garbage = await call_app(framed(b"not compressed", compressed=1), headers)
        assert garbage.trailers[b"grpc-status"] == b"13", encoding
        assert b"cannot decompress" in garbage.trailers[b"grpc-message"]
    brotli = [(b"content-type", b"application/grpc"), (b"grpc-encoding", b"br")]
    unknown = await call_app(framed(b"x", compressed=1), brotli)
    assert unknown.trailers[b"grpc-status"] == b"12"  # UNIMPLEMENTED
    assert b"gzip" in unknown.trailers[b"grpc-message"]
