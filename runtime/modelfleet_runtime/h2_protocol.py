"""The gRPC port's connections on the h2 transport (``grpc_h2``): uvicorn's own HTTP/2 protocol
(zttp) with what a gRPC server does to its connections, which uvicorn does not.

- **A stream budget.** zttp 0.0.35 ends a connection with GOAWAY ENHANCE_YOUR_CALM once it has
  opened 4,096 streams, failing the calls in flight, and has no setting for it; each connection
  is ended gracefully after ``STREAM_BUDGET`` streams instead, as a gRPC server with a maximum
  connection age does.
- **Cancellation.** A call's task is cancelled when the client resets its stream or the
  connection drops, as grpc.aio cancels a handler whose call the client cancelled (``Call``).
- **A drain that says so at once**: GOAWAY naming the last stream taken, so clients move new
  calls elsewhere while those in flight finish.
- **The default transport's connection limits** (``grpc_api.connection_limits``): at most
  ``--max-connections`` open connections (one more is closed at once: HTTP/2 has no answer
  before its handshake, as grpc closes it); the client's HTTP/2 preface within
  ``--header-read-timeout`` of the connection opening (on a TLS port, of the handshake's end,
  which ``tls_server`` bounds by ``--tls-handshake-timeout``); dead peers found by TCP
  keepalive probes after a quiet minute, dropped after 20 s without an answer (zttp cannot
  send HTTP/2 PINGs, which grpc uses for the same thing).

Hand-written as a subclass because uvicorn has no hook for any of these; it overrides
uvicorn 0.54-0.55's methods, which is why the h2 extra pins uvicorn to those versions.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.zttp_h2_impl import ZttpH2Protocol

from modelfleet_runtime.config import Settings

STREAM_BUDGET = 3584
"""Streams a connection takes before it is ended gracefully (zttp's cap is 4,096)."""
PREFACE = 24 + 9
"""Bytes of a client's start: the HTTP/2 preface and its SETTINGS frame's header."""
KEEPALIVE = (60, 20, 1)
"""TCP keepalive: first probe after 60 quiet seconds, then every 20 s; dropped after 1 unanswered
(grpc_api's keepalive_time_ms and keepalive_timeout_ms)."""

CALL = "modelfleet.grpc_call"
"""The scope key of a stream's ``Call``."""


class Call:
    """One call's task, which ``StreamBudgetProtocol`` cancels when the client resets the stream
    or the connection drops (``gone``), and ``grpc_h2`` when its deadline passes (``expired``):
    the flags tell those cancels from the drain's. A slot in the stream's scope, not a watcher
    task per call: that cost a fifth of a small call's CPU."""

    __slots__ = ("expired", "gone", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.gone = self.expired = False

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.gone = True
            self.task.cancel()

    def expire(self) -> None:
        if self.task is not None and not self.task.done():
            self.expired = True
            self.task.cancel()


class StreamBudgetProtocol(ZttpH2Protocol):
    """uvicorn's HTTP/2 protocol, ending each connection gracefully after ``budget`` streams:
    GOAWAY(NO_ERROR) names the last stream taken, the streams in flight are answered, a stream
    the client opened before it saw the GOAWAY is refused with REFUSED_STREAM (gRPC clients
    retry those on their new connection), and the client closes the connection (ours closes it
    ``LINGER`` seconds later if it does not: closing at once can cut frames the client is
    still sending). The limits are ``limited``'s (class attributes of the subclass)."""

    budget = STREAM_BUDGET
    LINGER = 5.0
    max_connections: int | None = None
    preface_timeout: float | None = None
    _last: int | None = None
    _linger: asyncio.TimerHandle | None = None
    _closing = False
    _waiting: asyncio.TimerHandle | None = None
    _received = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            self.transport = transport  # closed without a byte
            transport.close()
            return
        sock: socket.socket | None = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            idle, interval, count = KEEPALIVE
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        if self.preface_timeout is not None:
            self._waiting = self.loop.call_later(self.preface_timeout, transport.close)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._waiting is not None:
            self._received += len(data)
            if self._received >= PREFACE:
                self._waiting.cancel()
                self._waiting = None
        super().data_received(data)

    def handle_request(self, event: Any) -> None:
        if self._last is not None and event.stream_id > self._last:
            self.conn.stream(event.stream_id).reset(0x7)  # REFUSED_STREAM
            self.flush()
            return
        super().handle_request(event)
        cycle = self.cycles.get(event.stream_id)
        if cycle is not None:  # its task has not started: GrpcApp finds the slot in the scope
            cycle.scope[CALL] = Call()  # type: ignore[literal-required]
        if self._last is None and event.stream_id >= 2 * self.budget - 1:  # n-th: id 2n - 1
            self._last = event.stream_id
            self.conn.close(0, event.stream_id)  # GOAWAY, NO_ERROR
            self.shutdown_requested = True
            self.flush()

    def handle_rst_stream(self, event: Any) -> None:
        cycle = self.cycles.get(event.stream_id)
        super().handle_rst_stream(event)
        if cycle is not None and not cycle.response_complete:
            call: Call | None = cycle.scope.get(CALL)  # type: ignore[assignment]
            if call is not None:
                call.cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
        for cycle in list(self.cycles.values()):
            call: Call | None = cycle.scope.get(CALL)  # type: ignore[assignment]
            if call is not None and not cycle.response_complete:
                call.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server's drain: GOAWAY naming the last stream taken at once (uvicorn sends it
        only once the connection is idle, answering new streams 503 meanwhile), so clients
        move their new calls elsewhere while these finish."""
        self._closing = True
        if self.cycles and self._last is None:
            self._last = max(self.cycles)
            self.conn.close(0, self._last)
            self.flush()
        super().shutdown()

    def _close_connection(self) -> None:
        if self._last is None or self._closing or self.transport.is_closing():
            super()._close_connection()
            return
        self.flush()
        if self._linger is None:
            self._linger = self.loop.call_later(self.LINGER, self.transport.close)


def limited(settings: Settings) -> type[StreamBudgetProtocol]:
    """``StreamBudgetProtocol`` with ``settings``' connection cap and preface timeout."""
    limits = {
        "max_connections": settings.max_connections,
        "preface_timeout": settings.header_read_timeout,
    }
    return type("LimitedStreamBudgetProtocol", (StreamBudgetProtocol,), limits)
