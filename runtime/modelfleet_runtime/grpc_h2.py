"""The Open Inference Protocol's gRPC service on uvicorn's own HTTP/2 (zttp), an opt-in
transport: ``--grpc-transport h2`` (``pip install 'modelfleet[h2]'``).

Why: grpc.aio, which ``grpc_api`` serves on (as KServe's and MLServer's gRPC servers do), costs
most of a small call's CPU itself (its C core, the completion-queue thread handing each event
to the event loop); the same servicer over uvicorn's HTTP/2 answered 3.2x KServe's gRPC
server at 16 streams where grpc.aio answered 1.2-1.4x (bench/RESULTS.md, "gRPC on uvicorn's own
HTTP/2"). Why hand-written: no library serves gRPC as an ASGI app. What is written here is
gRPC's thin layer over HTTP/2 only: the 5-byte message framing, ``grpc-status`` and
``grpc-message`` in the trailers, ``grpc-timeout``; the RPCs themselves are
``grpc_api.InferenceServicer``'s, unchanged, through a context that carries the call's metadata
and turns ``abort`` into the trailers.

As on grpc.aio, a call the client cancels is cancelled on the server, ``grpc-timeout`` bounds
the whole call, the drain sends GOAWAY at once so clients move their new calls elsewhere while
the calls in flight finish, and the connection limits are the default transport's
(``h2_protocol``: the connections themselves). With ``--tls-*`` the port is TLS only, through
``tls_server``'s listener (rotation and the handshake timeout as on the HTTPS port). What the
default transport has that this one does not: HTTP/2 PINGs to find dead peers (TCP keepalive
does it here), an idle timer that counts calls only (uvicorn's counts any frame, a client's
PING too: ``GRPC_IDLE_MS``). Compressed requests are taken as grpcio takes them (gzip and
deflate, the limit on the decompressed size); answers go uncompressed, as grpcio's server sends
them unless told otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
import socket
import struct
import zlib
from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import quote

import grpc
import uvicorn
from google.protobuf.message import DecodeError, Message

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_runtime import tls_server
from modelfleet_runtime.auth import token_source
from modelfleet_runtime.config import Settings
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.grpc_api import GRPC_IDLE_MS, InferenceServicer
from modelfleet_runtime.h2_protocol import CALL, Call, limited
from modelfleet_runtime.tls import TlsFiles

log = logging.getLogger(__name__)

SERVICE = "/inference.GRPCInferenceService/"
REQUESTS: dict[str, type[Message]] = {
    method.name: getattr(pb, method.input_type.name)
    for method in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
}
_TIMEOUT = re.compile(rb"[0-9]{1,8}[HMSmun]")
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_GRPC = [(b"content-type", b"application/grpc")]
_WBITS = {b"gzip": 31, b"deflate": 15}
"""zlib's framing for each ``grpc-encoding`` (gRPC's deflate is zlib's format)."""

Scope = Mapping[str, Any]


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class _Context:
    """What ``InferenceServicer`` reads of a grpc.aio context: the metadata, and ``abort``."""

    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise _Aborted(code, details)


def timeout_of(value: bytes | None) -> float | None:
    """Seconds of a ``grpc-timeout`` header (``100m``, ``5S``: at most 8 digits, then the
    unit); None when absent."""
    if not value:
        return None
    if _TIMEOUT.fullmatch(value) is None:
        raise _Aborted(grpc.StatusCode.INTERNAL, f"malformed grpc-timeout {value!r}")
    return int(value[:-1]) * _UNITS[chr(value[-1])]


class GrpcApp:
    """ASGI app: each unary call of ``inference.GRPCInferenceService`` to ``servicer``."""

    def __init__(self, servicer: InferenceServicer, max_message: int) -> None:
        self.servicer, self.max_message = servicer, max_message

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        request_type = REQUESTS.get(path[len(SERVICE) :]) if path.startswith(SERVICE) else None
        headers = dict(scope["headers"])
        if scope["method"] != "POST" or not headers.get(b"content-type", b"").startswith(
            b"application/grpc"
        ):
            await send({"type": "http.response.start", "status": 415, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        call: Call | None = scope.get(CALL)  # None outside StreamBudgetProtocol (tests)
        if call is not None:
            call.task = asyncio.current_task()
        try:
            if request_type is None:
                raise _Aborted(grpc.StatusCode.UNIMPLEMENTED, f"unknown method {path}")
            deadline = timeout_of(headers.get(b"grpc-timeout"))
            call_ = self._call(getattr(self.servicer, path[len(SERVICE) :]), request_type,
                               scope, headers.get(b"grpc-encoding"), receive)  # fmt: skip
            if deadline is None:
                reply = await call_
            elif call is not None:  # a timer, not a timeout context: 3.4% of a call (py-spy)
                timer = asyncio.get_running_loop().call_later(deadline, call.expire)
                try:
                    reply = await call_
                finally:
                    timer.cancel()
            else:
                async with asyncio.timeout(deadline):
                    reply = await call_
        except _Aborted as exc:
            await _answer(send, b"", exc.code, exc.details)
        except TimeoutError:
            await _answer(send, b"", grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        except DecodeError:
            await _answer(send, b"", grpc.StatusCode.INTERNAL, "cannot parse the request message")
        except asyncio.CancelledError:
            if call is not None and call.gone:  # the client reset the stream: no one to answer
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                return
            if call is not None and call.expired:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                await _answer(send, b"", grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
                return
            # The server's drain ran out of time: say so, then stop.
            await _answer(send, b"", grpc.StatusCode.UNAVAILABLE, "server shutting down")
            raise
        else:
            data = reply.SerializeToString()
            await _answer(send, b"\0" + struct.pack(">I", len(data)) + data, grpc.StatusCode.OK)

    async def _call(
        self,
        method: Any,
        request_type: type[Message],
        scope: Scope,
        encoding: bytes | None,
        receive: Any,
    ) -> Message:
        """Read the call's message and run the servicer's method on it."""
        message = request_type.FromString(await self._message(receive, encoding))
        reply: Message = await method(message, _Context(metadata_of(scope["headers"])))
        return reply

    async def _message(self, receive: Any, encoding: bytes | None) -> bytes:
        """The call's one message, past its 5-byte prefix, decompressed if it was; bounded as
        it arrives and as it is decompressed."""
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            event = await receive()
            if event["type"] == "http.disconnect":
                raise _Aborted(grpc.StatusCode.CANCELLED, "client went away")
            chunk = event.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = event.get("more_body", False)
            if size > self.max_message + 5:
                raise _Aborted(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"message larger than the limit of {self.max_message} bytes",
                )
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(body) < 5:
            raise _Aborted(grpc.StatusCode.INTERNAL, "request has no message")
        compressed, length = body[0], struct.unpack(">I", body[1:5])[0]
        if length > len(body) - 5:
            raise _Aborted(grpc.StatusCode.INTERNAL, "request message cut short")
        if length < len(body) - 5:
            raise _Aborted(grpc.StatusCode.INTERNAL, "more than one message: unary RPCs only")
        return self._inflate(body[5:], encoding) if compressed else body[5:]

    def _inflate(self, data: bytes, encoding: bytes | None) -> bytes:
        """A compressed message, decompressed to at most ``max_message`` bytes."""
        if encoding is None or encoding == b"identity":
            raise _Aborted(grpc.StatusCode.INTERNAL, "compressed message without a grpc-encoding")
        wbits = _WBITS.get(encoding)
        if wbits is None:
            raise _Aborted(
                grpc.StatusCode.UNIMPLEMENTED,
                f"grpc-encoding {encoding.decode('latin-1')!r} is not supported: gzip, deflate",
            )
        inflater = zlib.decompressobj(wbits)
        try:
            message = inflater.decompress(data, self.max_message + 1)
        except zlib.error as exc:
            raise _Aborted(
                grpc.StatusCode.INTERNAL, f"cannot decompress the message: {exc}"
            ) from None
        if len(message) > self.max_message:
            raise _Aborted(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"message larger than the limit of {self.max_message} bytes",
            )
        if not inflater.eof:
            raise _Aborted(grpc.StatusCode.INTERNAL, "compressed message cut short")
        return message


_RESERVED = frozenset(
    {"content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding"}
)


def metadata_of(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str | bytes], ...]:
    """A call's metadata as grpc.aio gives it: repeated entries kept, gRPC's own headers left
    out, ``-bin`` values base64-decoded."""
    pairs: list[tuple[str, str | bytes]] = []
    for raw_key, raw_value in headers:
        key = raw_key.decode("latin-1")
        if key in _RESERVED:
            continue
        if key.endswith("-bin"):
            pairs.append((key, base64.b64decode(raw_value + b"=" * (-len(raw_value) % 4))))
        else:
            pairs.append((key, raw_value.decode("latin-1")))
    return tuple(pairs)


async def _answer(send: Any, body: bytes, code: grpc.StatusCode, message: str = "") -> None:
    status = [(b"grpc-status", str(code.value[0]).encode())]
    if message:
        status.append((b"grpc-message", quote(message, safe=" ").encode()))
    await send({"type": "http.response.start", "status": 200, "headers": _GRPC, "trailers": True})
    await send({"type": "http.response.body", "body": body})
    await send({"type": "http.response.trailers", "headers": status})


class H2Server:
    """The gRPC port's uvicorn server, run inside the app's event loop (no signal handling of
    its own: the HTTP server's drain stops it)."""

    def __init__(self, server: uvicorn.Server, listening: socket.socket) -> None:
        self.server, self.listening = server, listening
        self.port: int = listening.getsockname()[1]

    async def stop(self, grace: float | None) -> None:
        """Stop accepting, let the calls in flight finish within ``grace`` seconds (None: end
        them now, as grpc.aio's ``stop(None)``)."""
        self.server.config.timeout_graceful_shutdown = math.ceil(grace or 0)
        await self.server.shutdown(sockets=[self.listening])


async def start(settings: Settings, dataplane: DataPlane, tls: TlsFiles | None = None) -> H2Server:
    """Serve gRPC on ``settings.grpc_port`` (0: a free one) over uvicorn's HTTP/2; with
    ``tls``, over TLS only (``tls_server``'s listener, as on the HTTPS port: each new
    connection takes the certificate current at that moment, ALPN ``h2``)."""
    servicer = InferenceServicer(dataplane, token_source(settings))
    protocol_class = limited(settings)
    config = uvicorn.Config(
        GrpcApp(servicer, settings.max_body_size),
        host=settings.host,
        port=settings.grpc_port or 0,
        http=protocol_class,  # prior-knowledge HTTP/2 only, as gRPC clients speak it
        loop="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_keep_alive=GRPC_IDLE_MS // 1000,
        proxy_headers=False,  # nothing here reads the client's address (1.3% of a call)
        server_header=False,
        date_header=False,
    )
    config.load()
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    dualstack = settings.host == "::" and socket.has_dualstack_ipv6()  # as grpc's [::]
    try:
        listening = socket.create_server(
            (settings.host, config.port), family=family, dualstack_ipv6=dualstack
        )
    except OSError:
        raise OSError(
            f"cannot listen for gRPC on {settings.host}:{settings.grpc_port} (in use?); set "
            "--grpc-port to a free port, 0 for any, or null to turn gRPC off"
        ) from None
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # as Server.serve sets it: off
    if tls is None:
        await server.startup(sockets=[listening])
    else:  # uvicorn's startup, with our listener for its own (its shutdown closes it)
        protocol = partial(protocol_class, config=config, server_state=server.server_state,
                           app_state=server.lifespan.state)  # fmt: skip
        listener = tls_server.TlsListener(
            [listening], protocol, lambda: tls.h2_context, settings.tls_handshake_timeout, "gRPC"
        )
        server.servers = [listener]  # type: ignore[list-item]  # uvicorn calls close, wait_closed
        server.started = True
    started = H2Server(server, listening)
    log.info("gRPC (Open Inference Protocol) listening on %s:%d (HTTP/2 by uvicorn%s)",
             settings.host, started.port, ", TLS only" if tls else "")  # fmt: skip
    return started
