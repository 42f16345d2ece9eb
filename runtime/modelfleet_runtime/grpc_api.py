"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` on ``grpc_port``.

The same ``DataPlane`` as HTTP serves it, in the same event loop: admission (UNAVAILABLE when
full or draining), the model lookup (NOT_FOUND, UNAVAILABLE), the signature checks
(INVALID_ARGUMENT), batching, the W3C trace context (``traceparent`` and ``tracestate``
metadata, as HTTP's headers) and the request metrics with ``protocol="grpc"`` (the ``status``
label keeps HTTP's numbers, so one dashboard reads both). Bearer tokens, when configured, are
checked on every call but ServerLive and ServerReady (the health checks).

Inputs come typed (``InferTensorContents``) or raw (``raw_input_contents``, the only way for
FP16); every output goes back raw, as Triton answers, which KServe's, Triton's and MLServer's
clients all read. The generated messages and the datatype <-> contents table are the client
distribution's (``modelfleet_client.oip``, ``modelfleet_client.tensors``: one copy).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from modelfleet_client.tensors import GRPC_CONTENTS, to_bytes
from modelfleet_runtime import codec, elements
from modelfleet_runtime.auth import TokenSource, parse_bearer, token_source
from modelfleet_runtime.config import Settings
from modelfleet_runtime.dataplane import DataPlane, classify, parse_version
from modelfleet_runtime.errors import BadRequestError, UnauthorizedError
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.protocol import DATATYPES, InferRequest, InferResponse, datatype_of
from modelfleet_runtime.tls import TlsFiles, grpc_credentials

log = logging.getLogger(__name__)

CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
Reply = TypeVar("Reply")


class GrpcServer(Protocol):
    """What the server's lifespan needs of a gRPC server, whatever its transport."""

    async def stop(self, grace: float | None) -> Any:
        """Stop accepting calls; those in flight finish within ``grace`` seconds."""


def decode(request: pb.ModelInferRequest, max_elements: int) -> InferRequest:
    """An ``InferRequest`` from a gRPC one; BadRequestError says what is wrong with it."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for index, tensor in enumerate(request.inputs):
        name, datatype = tensor.name, tensor.datatype
        if name in arrays:
            raise BadRequestError(f"input '{name}' is given twice")
        if datatype not in DATATYPES:
            raise BadRequestError(f"input '{name}': unknown datatype {datatype!r}")
        shape, count = elements.check_shape(list(tensor.shape), name, max_elements)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequestError(
                    f"input '{name}': contents and raw_input_contents are both set"
                )
            flat = codec.from_binary(memoryview(raw[index]), name, datatype, count)
        else:
            flat = _typed(tensor.contents, name, datatype, count)
        arrays[name] = flat.reshape(shape)
    outputs = [o.name for o in request.outputs] or None
    return InferRequest(inputs=arrays, id=request.id or None, outputs=outputs)


def _typed(
    contents: pb.InferTensorContents, name: str, datatype: str, count: int
) -> np.ndarray[Any, Any]:
    field = GRPC_CONTENTS.get(datatype)
    if field is None:
        raise BadRequestError(f"input '{name}': {datatype} data must come in raw_input_contents")
    values = getattr(contents, field)
    if len(values) != count:
        raise BadRequestError(
            f"input '{name}': shape holds {count} elements but {field} has {len(values)}"
        )
    if datatype == "BYTES":
        return np.array([v.decode("utf-8", "replace") for v in values], dtype=object)
    array = np.asarray(values, dtype=np.float64 if datatype.startswith("FP") else None)
    return elements.cast_values(array, name, datatype, DATATYPES[datatype])


def encode(response: InferResponse) -> pb.ModelInferResponse:
    """A gRPC answer with every output in ``raw_output_contents``."""
    reply = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id or ""
    )
    for name, array in response.outputs.items():
        datatype = datatype_of(array)
        reply.outputs.add(name=name, datatype=datatype, shape=array.shape)
        reply.raw_output_contents.append(to_bytes(array, datatype))
    return reply


def trace_metadata(metadata: Iterable[tuple[str, Any]] | None) -> tuple[str | None, str | None]:
    """The W3C ``traceparent`` and ``tracestate`` metadata entries of a call, as HTTP's
    headers carry them (repeated entries joined the same way)."""
    traceparent: str | None = None
    tracestate: str | None = None
    for key, value in metadata or ():
        if key == "traceparent":
            traceparent = value if traceparent is None else f"{traceparent},{value}"
        elif key == "tracestate":
            tracestate = value if tracestate is None else f"{tracestate},{value}"
    return traceparent, tracestate


def _tensors(specs: list[dict[str, Any]]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(
            name=s["name"], datatype=s["datatype"], shape=s["shape"]
        )
        for s in specs
    ]


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over a ``DataPlane``."""

    def __init__(self, dataplane: DataPlane, tokens: TokenSource | None) -> None:
        self.dataplane, self.tokens = dataplane, tokens
        self.max_elements = dataplane.settings.max_body_size

    def _authorize(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.tokens is None:
            return
        metadata: Mapping[str, Any] = dict(context.invocation_metadata() or ())
        token = parse_bearer(str(metadata.get("authorization", "")).encode())
        if token is None:
            raise UnauthorizedError("missing bearer token")
        if not self.tokens.accepts(token):
            raise UnauthorizedError("invalid bearer token")

    async def _answer(
        self, context: grpc.aio.ServicerContext[Any, Any], make: Callable[[], Reply]
    ) -> Reply:
        """``make()``'s reply, or the call aborted with the error's code and message."""
        try:
            self._authorize(context)
            return make()
        except Exception as exc:
            status, message = classify(exc, "gRPC request")
        await context.abort(CODES.get(status, grpc.StatusCode.INTERNAL), message)
        raise AssertionError("context.abort raises")  # pragma: no cover

    async def ServerLive(
        self, _request: pb.ServerLiveRequest, _context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.dataplane.live())

    async def ServerReady(
        self, _request: pb.ServerReadyRequest, _context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelReadyResponse:
        return await self._answer(
            context,
            lambda: pb.ModelReadyResponse(
                ready=self.dataplane.model_ready(request.name, parse_version(request.version))
            ),
        )

    async def ServerMetadata(
        self, _request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerMetadataResponse:
        return await self._answer(
            context, lambda: pb.ServerMetadataResponse(**self.dataplane.server_metadata())
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelMetadataResponse:
        def make() -> pb.ModelMetadataResponse:
            meta = self.dataplane.model_metadata(request.name, parse_version(request.version))
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta.get("versions", [meta.get("version", "")]),
                platform=meta["platform"],
                inputs=_tensors(meta["inputs"]),
                outputs=_tensors(meta["outputs"]),
            )

        return await self._answer(context, make)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        async def work(model: OnnxModel) -> pb.ModelInferResponse:
            decoded = decode(request, self.max_elements)
            return encode(await self.dataplane.infer(model, decoded))

        traceparent, tracestate = trace_metadata(context.invocation_metadata())
        outcome = await self.dataplane.handle(
            "grpc",
            request.model_name,
            request.model_version,
            work,
            request_id=request.id,
            authorize=lambda: self._authorize(context),
            traceparent=traceparent,
            tracestate=tracestate,
        )
        if outcome.value is None:
            code = CODES.get(outcome.status, grpc.StatusCode.INTERNAL)
            await context.abort(code, outcome.error)
        return outcome.value


GRPC_IDLE_MS = 300_000
"""A connection with no call for 5 minutes is closed (GOAWAY; clients reconnect on their next
call): frees what clients that went away, or never sent a call, hold."""


def connection_limits(settings: Settings) -> list[tuple[str, int]]:
    """gRPC's own guards against slow, idle and too many clients (the HTTP port's are
    ``http_limits``): the handshake (TLS and HTTP/2) within --tls-handshake-timeout on a TLS
    port, else the HTTP/2 one within --header-read-timeout; at most --max-connections
    connections (beyond that grpc closes new ones at once: HTTP/2 has no answer before its
    handshake); idle ones closed; dead peers found by keepalive pings."""
    handshake = settings.tls_handshake_timeout if settings.tls else settings.header_read_timeout
    return [
        ("grpc.server_handshake_timeout_ms", round(handshake * 1000)),
        ("grpc.max_allowed_incoming_connections", settings.max_connections),
        ("grpc.max_connection_idle_ms", GRPC_IDLE_MS),
        ("grpc.keepalive_time_ms", 60_000),  # ping a quiet peer every minute...
        ("grpc.keepalive_timeout_ms", 20_000),  # ...and drop it if no answer in 20 s
    ]


async def start(
    settings: Settings, dataplane: DataPlane, tls: TlsFiles | None = None
) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC server on ``settings.grpc_port`` (0: a free one); with its port. With
    ``tls``, TLS only, its certificate rotating with the files (``tls.grpc_credentials``)."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_body_size),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),  # a taken port is an error, not a shared one
    ]
    server = grpc.aio.server(options=[*options, *connection_limits(settings)])
    servicer = InferenceServicer(dataplane, token_source(settings))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    try:
        address = f"{host}:{settings.grpc_port or 0}"
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, grpc_credentials(tls))
    except RuntimeError:  # grpc says only "Failed to bind"
        raise OSError(
            f"cannot listen for gRPC on {settings.host}:{settings.grpc_port} (in use?); set "
            "--grpc-port to a free port, 0 for any, or null to turn gRPC off"
        ) from None
    await server.start()
    tls_note = " (TLS only)" if tls is not None else ""
    log.info("gRPC (Open Inference Protocol)%s listening on %s:%d", tls_note, settings.host, port)
    return server, port
