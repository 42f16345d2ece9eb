"""Slow clients cannot hold the HTTP port: read timeouts and a cap on open connections.

``server.serve`` passes ``protocol_class(settings, metrics)`` to uvicorn as its ``http``
protocol. It is uvicorn's httptools protocol plus:

- a header read timeout: a connection's first request must have its headers complete within
  ``header_read_timeout`` of the connection opening, later ones within that time of their
  first byte (keep-alive idle time between requests is uvicorn's ``timeout_keep_alive``).
  A request cut there is answered 408 ``{"error": ...}`` and closed; a connection that never
  sent a byte is closed without an answer (there is no request to answer).
- a body read timeout: once the headers are complete, the body may go ``body_read_timeout``
  without a byte arriving, and must average ``body_min_rate`` bytes/s once that grace has
  passed (Apache's mod_reqtimeout rule: the allowance grows by one second per
  ``body_min_rate`` bytes received), so a 64 MiB body on a slow link is not cut but a
  trickle is. Cut there: 408 if no answer has started yet, and closed.
- a cap of ``max_connections`` open connections: one more is answered 503
  ``{"error": "too many open connections"}`` with ``Connection: close`` at once, its writing
  side shut, and it is closed when the client closes or after ``LINGER`` seconds (closing
  with the client's request unread could reset the connection before the client has read
  the answer).

Time the server itself is behind (reading paused because the app has not taken the bytes it
has, a ``100-continue`` not sent yet) does not count against the client.

Why hand-written: uvicorn has only ``timeout_keep_alive`` (after a response) and
``limit_concurrency`` (a 503 sent only once a request's headers are complete, so a client
that never completes them is never refused); hypercorn's and granian's timeouts would mean
changing the server. Cost: one timer sweeps every open connection (every second, or a quarter
of the shortest timeout) and reads what each waits for from uvicorn's own state, so a request
pays only a byte count in ``on_body``: no timer armed and cancelled per request, no parser
callback of its own. A clock starts when the sweep first sees its wait (a first request's
with the connection), so a deadline falls at most one interval late, never early. A body
still arriving after the app has answered early (a 413, a 401) stays under the body timeout,
where uvicorn alone would keep that connection with no timer at all.
"""

from __future__ import annotations

import asyncio
import http
import logging
import resource
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelfleet_runtime import codec
from modelfleet_runtime.config import Settings
from modelfleet_runtime.held_writes import HeldHeadTransport
from modelfleet_runtime.metrics import Metrics

log = logging.getLogger(__name__)

LINGER = 2.0
"""Seconds a refused connection stays half-closed for the client to read its 503."""
RESERVED_DESCRIPTORS = 256
"""Descriptors kept for everything but client connections (model files, storage, gRPC's own)."""

# What a connection waits for from its client (``LimitedHttpToolsProtocol.check``).
OPENED, HEADERS, BODY = 0, 1, 2


def raw_response(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 answer ``{"error": message}`` that closes the connection."""
    body = codec.error_body(message)
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class ConnectionGuard:
    """The limits and the open connections of one server; one timer checks them all."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.header_timeout = settings.header_read_timeout
        self.body_timeout = settings.body_read_timeout
        self.min_rate = settings.body_min_rate
        self.max_connections = settings.max_connections
        self.interval = min(1.0, self.header_timeout / 4, self.body_timeout / 4)
        self.open: set[LimitedHttpToolsProtocol] = set()
        self.closed = {
            reason: metrics.http_connections_closed.labels(reason)
            for reason in ("header_timeout", "body_timeout", "over_capacity")
        }
        metrics.http_connections_open.set_function(lambda: len(self.open))
        self._timer: asyncio.TimerHandle | None = None

    def add(self, connection: LimitedHttpToolsProtocol) -> None:
        self.open.add(connection)
        if self._timer is None:
            self._timer = connection.loop.call_later(self.interval, self.sweep, connection.loop)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close every connection past its deadline; re-armed while any is open."""
        now, closed = loop.time(), 0
        for connection in list(self.open):
            closed += connection.check(now)
        if closed:  # one line a sweep, not one a connection: a flood must not flood the log
            log.info("closed %d connections of slow clients", closed)
        self._timer = loop.call_later(self.interval, self.sweep, loop) if self.open else None

    def refuse(self, transport: asyncio.Transport, default_headers: list[Any]) -> None:
        """Answer 503 on a connection over the cap, and hand it to a protocol that drops
        whatever the client still sends until it closes or ``LINGER`` runs out."""
        self.closed["over_capacity"].inc()
        transport.set_protocol(Refused(transport))
        transport.write(raw_response(503, "too many open connections", default_headers))
        if transport.can_write_eof():
            transport.write_eof()
        else:  # TLS has no half-close: close once the answer is written
            transport.close()


class Refused(asyncio.Protocol):
    """A refused connection's last moments: its request is read and dropped."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.timer = asyncio.get_running_loop().call_later(LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the answer is already on its way

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, _exc: Exception | None) -> None:
        self.timer.cancel()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the read timeouts and the connection cap of
    ``guard`` (set on the subclass ``protocol_class`` makes)."""

    guard: ClassVar[ConnectionGuard]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self.guard
        if len(guard.open) >= guard.max_connections:
            guard.refuse(transport, self.server_state.default_headers)
            return
        super().connection_made(transport)
        self.transport = HeldHeadTransport(transport, self.loop)  # type: ignore[assignment]
        self._since = self._seen_at = self.loop.time()
        self._key: object = None  # what the sweep last saw the connection wait for
        self._body = self._seen = self._mark = 0
        guard.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.open.discard(self)
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.transport.expect_head()  # type: ignore[attr-defined]

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._body += len(body)

    def check(self, now: float) -> bool:
        """Called by the sweep: close this connection if its client is past a deadline.

        What the connection waits for is read from uvicorn's own state, so that no parser
        callback has to note it: no request yet (``scope`` None: OPENED), headers (a
        ``scope`` the ``cycle`` is not yet for: HEADERS), a body (``more_body``: BODY), or
        nothing from the client. A new wait starts its clock when the sweep first sees it
        (at most one interval late), but a first request's starts with the connection."""
        scope, cycle, guard = self.scope, self.cycle, self.guard
        key: object
        if scope is None or cycle is None:
            phase, key = (OPENED if scope is None else HEADERS), None
        elif cycle.scope is not scope:
            phase, key = HEADERS, scope
        elif cycle.more_body:
            phase, key = BODY, cycle
        else:
            self._key = cycle  # the request is read: uvicorn's keep-alive timeout is next
            return False
        if key is not self._key:
            self._key, self._since, self._seen_at = key, now, now
            self._seen = self._mark = self._body  # the rate counts what arrives from now on
            return False
        if self.transport.is_closing():
            return False
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._since = self._seen_at = now  # the server's turn, not the client's
            return False
        if phase != BODY:
            if now - self._since <= guard.header_timeout:
                return False
            limit = f"headers not complete within {guard.header_timeout:g} s"
            # A connection that sent nothing has no request to answer.
            return self.expire("header_timeout", "request header timeout: " + limit, phase)
        if self._body != self._seen:
            self._seen, self._seen_at = self._body, now
        elif now - self._seen_at > guard.body_timeout:
            limit = f"no data for {guard.body_timeout:g} s"
            return self.expire("body_timeout", "request body timeout: " + limit, phase)
        received = self._body - self._mark
        if guard.min_rate and now - self._since > guard.body_timeout + received / guard.min_rate:
            limit = f"slower than {guard.min_rate} bytes/s"
            return self.expire("body_timeout", "request body timeout: " + limit, phase)
        return False

    def expire(self, reason: str, message: str, phase: int) -> bool:
        """Close for ``reason``, answering 408 ``{"error": message}`` where an answer is
        still due and nothing else is being written."""
        self.guard.closed[reason].inc()
        cycle = self.cycle
        if phase == BODY:  # the request being read is ``cycle``
            answer = cycle is not None and not cycle.response_started
        else:  # a next request (none yet: OPENED) after ``cycle``, if any, was answered
            answer = phase == HEADERS and (cycle is None or cycle.response_complete)
        if answer:
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # its task, waiting for the body, writes nothing
                cycle.message_event.set()
            self.transport.write(raw_response(408, message, self.server_state.default_headers))
        self.transport.close()
        return True


def protocol_class(settings: Settings, metrics: Metrics) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``, with its own guard; also
    raises the process's soft descriptor limit to fit ``max_connections``."""

    class Guarded(LimitedHttpToolsProtocol):
        guard = ConnectionGuard(settings, metrics)

    ports = 1 if settings.grpc_port is None else 2  # gRPC has the same cap
    raise_descriptor_limit(ports * settings.max_connections + RESERVED_DESCRIPTORS)
    return Guarded


def raise_descriptor_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (as Go's runtime does at start-up:
    container runtimes often leave it at 1,024); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "the descriptor limit (%d) is below the %d that max_connections needs: connections "
            "beyond it fail at accept instead of getting a 503; lower --max-connections",
            target,
            wanted,
        )
    return target
