"""The blocking client's HTTP transport: a thread-safe pool of keep-alive connections on the
standard library's sockets, speaking ``http1``'s HTTP/1.1 (which says why it is hand-written).

Each call holds one connection for its request and answer, so threads never share one at the
same time. The request goes out in one gathering ``sendmsg`` straight from the arrays' memory.
A pooled connection the server has closed meanwhile (its idle timeout) is noticed before use
(its socket reads as ready) and replaced; one found closed only when the request is written
(nothing of an answer arrived) is replaced once more, transparently; anything later is a 503,
retried by the caller's backoff. ``timeout`` bounds the connect and each socket read or write.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from typing import IO, Any, TypeVar

from modelfleet_client import retry as retry_module
from modelfleet_client.calls import Call
from modelfleet_client.errors import InferenceServerError
from modelfleet_client.http1 import (
    MAX_LINE,
    Endpoint,
    Heads,
    Need,
    Parser,
    ProtocolError,
    Stale,
    Unreachable,
    failure,
    parse_answer,
)
from modelfleet_client.rest import Answer, Body, Request
from modelfleet_client.retry import Backoff

T = TypeVar("T")
MAX_IDLE = 100
"""Idle connections kept for reuse; more (after a burst of threads) are closed."""
SMALL = 65536
"""Up to this size a TLS request is joined into one write (TLS sockets have no sendmsg)."""


class Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: IO[bytes] = sock.makefile("rb")

    def dropped(self) -> bool:
        """Whether the server closed it (or sent something unasked) while it sat idle."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def send(self, parts: Body) -> None:
        """Write ``parts`` in order: one ``sendmsg`` on plain TCP (no copy); on TLS, small
        requests joined and large parts written one by one."""
        if isinstance(self.sock, ssl.SSLSocket):
            if sum(len(p) for p in parts) <= SMALL:
                parts = [b"".join(parts)]
            for part in parts:
                self.sock.sendall(part)
            return
        sent = self.sock.sendmsg(parts)
        for part in parts:  # a partial write: finish from where it stopped
            if sent >= len(part):
                sent -= len(part)
                continue
            self.sock.sendall(memoryview(part)[sent:])
            sent = 0

    def read(self, need: Need) -> bytes:
        kind, size = need
        if kind == "line":
            line = self.reader.readline(MAX_LINE + 1)
            if len(line) > MAX_LINE:
                raise ProtocolError(f"a line longer than {MAX_LINE} bytes")
            return line
        if kind == "rest":
            return self.reader.read()
        data = self.reader.read(size)
        if len(data) != size:
            raise ProtocolError(f"the answer ended after {len(data)} of {size} body bytes")
        return data

    def answer(self, parser: Parser) -> tuple[Answer, bool]:
        try:
            need = next(parser)
            while True:
                need = parser.send(self.read(need))
        except StopIteration as done:
            result: tuple[Answer, bool] = done.value
            return result

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Pool:
    """Keep-alive connections to the server of ``heads``."""

    def __init__(self, heads: Heads, timeout: float | None, tls: ssl.SSLContext | None) -> None:
        self.heads, self.timeout, self.tls = heads, timeout, tls
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> Connection:
        try:
            sock = socket.create_connection((self.heads.host, self.heads.port), self.timeout)
        except OSError as exc:
            raise Unreachable(str(exc)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.heads.host)
        except BaseException:
            sock.close()
            raise
        return Connection(sock)

    def _take(self) -> tuple[Connection, bool]:
        """A connection, and whether it carried requests before."""
        while True:
            with self._lock:
                if self._closed:
                    raise InferenceServerError(503, "the client is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(), False
            if not conn.dropped():
                return conn, True
            conn.close()

    def _give(self, conn: Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def exchange(self, head: bytes, body: Body) -> Answer:
        """Write one request and read its answer."""
        conn, reused = self._take()
        try:
            return self._exchange(conn, head, body)
        except Stale:
            if not reused:
                raise ConnectionResetError("the server closed the connection unanswered") from None
        return self._exchange(self._connect(), head, body)

    def _exchange(self, conn: Connection, head: bytes, body: Body) -> Answer:
        try:
            try:
                conn.send([head, *body])
                first = conn.read(("line", 0))
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                raise Stale() from None
            if not first:
                raise Stale()
            answer, keep = conn.answer(parse_answer(first))
        except BaseException:
            conn.close()
            raise
        if keep:
            self._give(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        with self._lock:
            self._closed, idle, self._idle = True, self._idle, []
        for conn in idle:
            conn.close()


class RestTransport(Endpoint):
    """Sends ``RestCalls`` over a ``Pool``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float | None,
        backoff: Backoff,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(url, token, timeout, backoff)
        self.pool = Pool(self.heads, timeout, tls)

    def run(self, call: Call[T], *, retry: bool = True) -> T:
        return retry_module.run(self._send, call, self.backoff, retry)

    def _send(self, request: Request) -> Any:
        head, body = self.message(request)
        try:
            return self.pool.exchange(head, body)
        except (OSError, ProtocolError, Unreachable) as exc:
            raise failure(exc, self.url, self.timeout) from None

    def close(self) -> None:
        self.pool.close()
