"""The Open Inference Protocol over gRPC (``grpc://`` and ``grpcs://`` URLs; the ``grpc``
extra: grpcio and protobuf).

``RpcCalls`` builds ``inference.GRPCInferenceService`` messages and reads replies;
``RpcTransport`` and ``AsyncRpcTransport`` send them over one channel each (one HTTP/2
connection that multiplexes every call, from any thread or task). Inputs travel in
``raw_input_contents`` (``tensors.to_bytes``: the only form FP16 has); outputs are read raw or
typed (``InferTensorContents``), whichever the server sends. The generated messages live in
``oip/`` (``scripts/build-grpc``); the methods are bound here from a table, typed, instead of
through the generated stub class, which has no type information.

The protocol's gRPC service has no repository index: ``models()`` over gRPC raises 501.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
import numpy as np

from modelfleet_client import retry as retry_module
from modelfleet_client import tensors
from modelfleet_client.calls import Arrays, Call
from modelfleet_client.errors import GRPC_STATUS, InferenceServerError
from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.retry import Backoff
from modelfleet_client.tls import TlsFiles

T = TypeVar("T")
SERVICE = "/inference.GRPCInferenceService/"
METHODS: dict[str, tuple[Any, Any]] = {
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}
"""Method -> (request, reply) message classes."""
OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class RpcCalls:
    """Requests of the Open Inference Protocol's gRPC binding."""

    def infer(
        self,
        model: str,
        version: str | None,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str] | None,
    ) -> Call[Arrays]:
        request = pb.ModelInferRequest(model_name=model, model_version=version or "")
        for name, array in inputs.items():
            datatype = tensors.datatype_of(array)
            request.inputs.add(name=name, datatype=datatype, shape=array.shape)
            request.raw_input_contents.append(tensors.to_bytes(array, datatype))
        for name in outputs or ():
            request.outputs.add(name=name)
        return Call(("ModelInfer", request), decode_reply)

    def ready(self, model: str | None, version: str | None) -> Call[bool]:
        if model is None:
            return Call(("ServerReady", pb.ServerReadyRequest()), _ready)
        request = pb.ModelReadyRequest(name=model, version=version or "")
        return Call(("ModelReady", request), _ready)

    def metadata(self, model: str, version: str | None) -> Call[dict[str, Any]]:
        request = pb.ModelMetadataRequest(name=model, version=version or "")
        return Call(("ModelMetadata", request), _model_metadata)

    def server_metadata(self) -> Call[dict[str, Any]]:
        request = pb.ServerMetadataRequest()
        return Call(("ServerMetadata", request), _server_metadata)

    def models(self) -> Call[list[dict[str, Any]]]:
        raise InferenceServerError(
            501,
            "the Open Inference Protocol's gRPC service has no repository index: "
            "list models with an http:// URL",
        )


def _ready(reply: Any) -> bool:
    if not reply.ready:
        raise InferenceServerError(503, "not ready")
    return True


def _tensors(specs: Any) -> list[dict[str, Any]]:
    return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]


def _model_metadata(reply: pb.ModelMetadataResponse) -> dict[str, Any]:
    return {
        "name": reply.name,
        "versions": list(reply.versions),
        "platform": reply.platform,
        "inputs": _tensors(reply.inputs),
        "outputs": _tensors(reply.outputs),
    }


def _server_metadata(reply: pb.ServerMetadataResponse) -> dict[str, Any]:
    return {"name": reply.name, "version": reply.version, "extensions": list(reply.extensions)}


def decode_reply(reply: pb.ModelInferResponse) -> Arrays:
    """The outputs of a ``ModelInferResponse``, raw or typed."""
    raw = reply.raw_output_contents
    if raw and len(raw) != len(reply.outputs):
        raise _malformed(f"{len(raw)} raw_output_contents for {len(reply.outputs)} outputs")
    found: Arrays = {}
    for index, tensor in enumerate(reply.outputs):
        shape = tuple(tensor.shape)
        try:
            if tensor.datatype not in tensors.DATATYPES:
                raise ValueError(f"unknown datatype {tensor.datatype!r}")
            if raw:
                flat = tensors.from_bytes(raw[index], tensor.datatype, math.prod(shape))
            else:
                flat = _typed(tensor)
            found[tensor.name] = flat.reshape(shape)
        except ValueError as exc:
            raise _malformed(f"output '{tensor.name}': {exc}") from None
    return found


def _typed(tensor: pb.ModelInferResponse.InferOutputTensor) -> np.ndarray[Any, Any]:
    field = tensors.GRPC_CONTENTS.get(tensor.datatype)
    if field is None:
        raise ValueError(f"{tensor.datatype} has no typed contents and came without raw bytes")
    values = getattr(tensor.contents, field)
    if tensor.datatype != "BYTES":
        return np.array(values, dtype=tensors.DATATYPES[tensor.datatype])
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def _malformed(detail: str) -> InferenceServerError:
    return InferenceServerError(502, f"the server's answer is not the protocol's: {detail}")


def failure(exc: grpc.RpcError, target: str, timeout: float | None) -> InferenceServerError:
    """A failed call as an ``InferenceServerError``; ``retry-after`` (seconds) or
    ``grpc-retry-pushback-ms`` in the trailing metadata become ``retry_after``."""
    call: Any = exc  # every RpcError a call raises is also a grpc.Call
    code = call.code()
    name = code.name if code is not None else "UNKNOWN"
    message = call.details() or name
    if name == "DEADLINE_EXCEEDED":
        message = f"no answer from {target} within {timeout} s"
    trailing = dict(call.trailing_metadata() or ())
    retry_after = None
    if str(trailing.get("retry-after", "")).isdigit():
        retry_after = float(trailing["retry-after"])
    elif str(trailing.get("grpc-retry-pushback-ms", "")).isdigit():
        retry_after = int(trailing["grpc-retry-pushback-ms"]) / 1000
    status = GRPC_STATUS.get(name, 500)
    return InferenceServerError(status, message, retry_after=retry_after, grpc_code=name)


def _credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    roots, key, chain = tls.pem()
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=chain
    )


def _bind(channel: grpc.Channel | grpc.aio.Channel) -> dict[str, Any]:
    """A callable per method of ``METHODS`` on ``channel``."""
    return {
        name: channel.unary_unary(  # type: ignore[call-arg]
            SERVICE + name,
            request_serializer=request.SerializeToString,
            response_deserializer=reply.FromString,
            _registered_method=True,  # as generated stubs do: no per-call method lookup
        )
        for name, (request, reply) in METHODS.items()
    }


class _Transport:
    """What both gRPC transports keep: where, how long, how often, and the token."""

    def __init__(
        self,
        target: str,
        token: str | None,
        timeout: float | None,
        backoff: Backoff,
        *,
        tls: TlsFiles | None,
    ) -> None:
        self.target, self.timeout, self.backoff = target, timeout, backoff
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.credentials = _credentials(tls) if tls is not None else None
        """None: a plaintext channel (grpc://)."""


class RpcTransport(_Transport):
    """Sends ``RpcCalls`` over one ``grpc.Channel`` (thread-safe)."""

    def __init__(self, target: str, *args: Any, **options: Any) -> None:
        super().__init__(target, *args, **options)
        if self.credentials is not None:
            self.channel = grpc.secure_channel(target, self.credentials, OPTIONS)
        else:
            self.channel = grpc.insecure_channel(target, OPTIONS)
        self.methods = _bind(self.channel)

    def run(self, call: Call[T], *, retry: bool = True) -> T:
        return retry_module.run(self._send, call, self.backoff, retry)

    def _send(self, request: tuple[str, Any]) -> Any:
        method, message = request
        try:
            return self.methods[method](message, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise failure(exc, self.target, self.timeout) from None

    def close(self) -> None:
        self.channel.close()


class AsyncRpcTransport(_Transport):
    """Sends ``RpcCalls`` over one ``grpc.aio.Channel``, made on the first call: an aio
    channel belongs to the event loop it was made in, so one ``AsyncClient`` serves one loop."""

    def __init__(self, target: str, *args: Any, **options: Any) -> None:
        super().__init__(target, *args, **options)
        self.channel: grpc.aio.Channel | None = None
        self.methods: dict[str, Any] = {}

    def _open(self) -> dict[str, Any]:
        if self.credentials is None:
            self.channel = grpc.aio.insecure_channel(self.target, OPTIONS)
        else:
            self.channel = grpc.aio.secure_channel(self.target, self.credentials, OPTIONS)
        self.methods = _bind(self.channel)
        return self.methods

    async def run(self, call: Call[T], *, retry: bool = True) -> T:
        return await retry_module.arun(self._send, call, self.backoff, retry)

    async def _send(self, request: tuple[str, Any]) -> Any:
        method, message = request
        methods = self.methods or self._open()
        try:
            return await methods[method](message, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise failure(exc, self.target, self.timeout) from None

    async def aclose(self) -> None:
        if self.channel is not None:
            await self.channel.close()
