"""The HTTPS port: an accept loop of our own in front of uvicorn's HTTP protocol.

``server.DrainingServer.startup`` starts a ``TlsListener`` in place of uvicorn's listener when
TLS is on; uvicorn's shutdown closes it as it closes its own (``close``, ``wait_closed``).
``grpc_h2`` does the same on the gRPC port with uvicorn's HTTP/2 protocol and
``TlsFiles.h2_context``.

Hand-written because ``loop.create_server(ssl=context)`` (what uvicorn calls) fixes one
context for the server's life and answers a plain HTTP request with a failed handshake,
which clients report as a bare "connection reset". Here, each accepted connection:

- waits for its first byte and peeks at it (``MSG_PEEK`` leaves it in the socket);
- 0x16, a TLS handshake record: goes to ``loop.connect_accepted_socket`` with the context
  current at that moment (``TlsFiles.context``, so a rotated certificate reaches every new
  connection while open ones keep theirs) and the HTTP protocol uvicorn would have used
  (its own, or the class ``uvicorn.Config(http=...)`` names), which sees the decrypted
  stream exactly as behind uvicorn's own TLS listener;
- anything else gets ``PlainHttpRefusal``: 400 and a plain-text line saying to use https,
  as Go's and nginx's servers answer, then the connection closes.

Both steps together must finish within ``tls_handshake_timeout`` (a connection that sends
nothing, or stalls half-way through its handshake, is closed), so idle connections cannot
hold the server's descriptors before they are even HTTP connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import cast

log = logging.getLogger(__name__)

TLS_HANDSHAKE = b"\x16"
REFUSAL_TEXT = b"Client sent an HTTP request to an HTTPS server: use https:// on this port.\n"
REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(REFUSAL_TEXT)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + REFUSAL_TEXT
)
MAX_PLAIN_HEAD = 16 * 1024
"""Bytes of a plain HTTP request read before the refusal is sent regardless."""
ACCEPT_RETRY = 0.1
"""Seconds before accepting again after accept() failed (out of descriptors, say)."""


class PlainHttpRefusal(asyncio.Protocol):
    """Answers a plain HTTP request on the TLS port with 400, then closes. The answer goes
    once the request line is in; the rest of what the client sends is read and dropped until
    it closes its side (closing with unread data would reset the connection, and the client
    could lose the answer), within ``timeout`` s in all."""

    def __init__(self, timeout: float) -> None:
        self.timeout, self.seen, self.answered = timeout, bytearray(), False
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.timer = asyncio.get_running_loop().call_later(self.timeout, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        if self.answered or self.transport is None:
            return
        self.seen += data
        if b"\n" in self.seen or len(self.seen) >= MAX_PLAIN_HEAD:
            self.answered = True
            self.transport.write(REFUSAL)
            self.transport.write_eof()
            log.debug("plain HTTP on the TLS port refused: %r", bytes(self.seen[:80]))
            self.seen.clear()

    def eof_received(self) -> bool:
        return False  # close (after the answer has been written)

    def connection_lost(self, _exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


async def _first_byte(sock: socket.socket) -> bytes:
    """The first byte the client sent, left unread in the socket (b"" if it closed)."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await readable
    finally:
        loop.remove_reader(sock.fileno())
    return sock.recv(1, socket.MSG_PEEK)


class TlsListener:
    """Accepts on ``sockets`` and hands each connection to ``protocol`` over TLS, with the
    context ``context()`` gives at that moment; ``port`` names the port in log lines."""

    def __init__(
        self,
        sockets: list[socket.socket],
        protocol: Callable[[], asyncio.Protocol],
        context: Callable[[], ssl.SSLContext],
        handshake_timeout: float,
        port: str = "HTTPS",
    ) -> None:
        self.sockets, self.protocol, self.context = sockets, protocol, context
        self.handshake_timeout, self.port = handshake_timeout, port
        self._accepting = [asyncio.ensure_future(self._accept(sock)) for sock in sockets]
        self._pending: set[asyncio.Task[None]] = set()

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        while True:
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: the next try may succeed
                if not failing:  # once per run of failures, not ten lines a second
                    log.warning("accept failed on the %s port (retrying): %s", self.port, exc)
                failing = True
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            failing = False
            task = asyncio.ensure_future(self._connection(sock))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connection(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.handshake_timeout
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            first = await asyncio.wait_for(_first_byte(sock), self.handshake_timeout)
        except (OSError, TimeoutError):
            sock.close()
            return
        if not first:
            sock.close()
            return
        # From here the loop's transport owns the socket and closes it on failure.
        try:
            if first != TLS_HANDSHAKE:
                refusal = PlainHttpRefusal(max(deadline - loop.time(), 0.001))
                await loop.connect_accepted_socket(lambda: refusal, sock)
                return
            await loop.connect_accepted_socket(
                self.protocol,
                sock,
                ssl=self.context(),
                ssl_handshake_timeout=max(deadline - loop.time(), 0.001),
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            # An untrusted client certificate, a client that gave up, a stalled handshake:
            # the client's problem, not the server's.
            log.debug("TLS handshake failed: %s", exc)

    def close(self) -> None:
        """Stop accepting; connections still in their handshake are dropped."""
        for task in [*self._accepting, *self._pending]:
            task.cancel()
        for sock in self.sockets:
            sock.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._accepting, *self._pending, return_exceptions=True)


def listen(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for ``host``:``port`` (each address it resolves to, as asyncio's
    ``create_server`` binds them)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(infos):
            sock = socket.create_server(address[:2], family=family, backlog=backlog)
            sock.setblocking(False)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
