"""Servers on 127.0.0.1 that answer from a script, for what our runtime cannot be made to do
on demand: a 503 with ``Retry-After``, a 400 to count retries of, chunked bodies, a
keep-alive connection closed behind the client's back, gRPC's UNAVAILABLE, and TLS.

``ScriptedHTTP`` is the standard library's threading HTTP/1.1 server; ``ScriptedGRPC`` a real
grpcio server with the protocol's servicer. Each answers request N with ``replies[N]`` (the
last one repeating) and records every request it saw, with its arrival time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from tests.helpers.tls import Tls

OUTPUT = {"name": "y", "datatype": "INT32", "shape": [2], "data": [4, 2]}
OK = json.dumps({"model_name": "m", "outputs": [OUTPUT]}).encode()


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = OK
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    """Send the body in chunks of 5 bytes (``Transfer-Encoding: chunked``)."""
    hang_up: bool = False
    """Close the connection after answering, without saying so in the answer."""
    framed: bool = True
    """False: no Content-Length, the end of the connection ends the body (HTTP/1.0 style)."""


@dataclass
class Seen:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int
    """Which TCP connection carried it (a count, from 1)."""


@dataclass
class Script:
    replies: list[Reply]
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, seen: Seen) -> Reply:
        with self.lock:
            self.seen.append(seen)
            return self.replies[min(len(self.seen), len(self.replies)) - 1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def setup(self) -> None:
        super().setup()
        with self.server.script.lock:
            self.server.script.connections += 1
            self.number = self.server.script.connections

    def _answer(self) -> None:
        script: Script = self.server.script
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = script.next(
            Seen(time.monotonic(), self.command, self.path, headers, body, self.number)
        )
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunked:
            self.send_header("transfer-encoding", "chunked")
        elif reply.framed:
            self.send_header("content-length", str(len(reply.body)))
        self.end_headers()
        if reply.chunked:
            for start in range(0, len(reply.body), 5):
                part = reply.body[start : start + 5]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(reply.body)
        self.close_connection = reply.hang_up or not reply.framed

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def scripted_http(*replies: Reply, tls: Tls | None = None) -> Iterator[tuple[str, Script]]:
    """A server answering with ``replies`` (over TLS with ``tls``): its URL and its record."""
    script = Script(list(replies))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if tls is not None:
        server.socket = tls.server_context().wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.script = script  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http{'s' if tls else ''}://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _Servicer(pb_grpc.GRPCInferenceServiceServicer):
    """ModelInfer answers ``unavailable`` times with UNAVAILABLE, then echoes its inputs."""

    def __init__(self, unavailable: int, script: Script) -> None:
        self.unavailable, self.script = unavailable, script

    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        with self.script.lock:
            self.script.seen.append(Seen(time.monotonic(), "ModelInfer", "", {}, b"", 0))
            count = len(self.script.seen)
        if count <= self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "busy, try again")
        reply = pb.ModelInferResponse(model_name=request.model_name)
        for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            reply.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            reply.raw_output_contents.append(raw)
        return reply


@contextmanager
def scripted_grpc(unavailable: int, tls: Tls | None = None) -> Iterator[tuple[str, Script]]:
    """A gRPC server (over TLS with ``tls``) whose first ``unavailable`` ModelInfer calls fail
    with UNAVAILABLE."""
    script = Script([])
    server = grpc.server(ThreadPoolExecutor(4))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _Servicer(unavailable, script), server
    )
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        pair = (tls.key.read_bytes(), tls.cert.read_bytes())
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([pair]))
    server.start()
    try:
        yield f"grpc{'s' if tls else ''}://127.0.0.1:{port}", script
    finally:
        server.stop(None).wait(10)
