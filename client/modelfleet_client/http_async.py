"""The async client's HTTP transport: keep-alive connections on asyncio streams, speaking
``http1``'s HTTP/1.1 (which says why it is hand-written: httpx's ``AsyncClient`` cost about
3.3 ms of client CPU a call here, and its pool slows down quadratically with waiting calls).

Up to ``MAX_CONNECTIONS`` connections, each carrying one call at a time; further calls wait
for a free one (any number may wait). Connections belong to the event loop that opened them,
so one ``AsyncClient`` serves one loop. A pooled connection the server has closed meanwhile
is noticed (the stream has seen its end) and replaced, and one found closed only when the
request is written is replaced once more, as in ``http_blocking``. ``timeout`` bounds the
connect, and then the request and its whole answer.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, TypeVar

from modelfleet_client import retry as retry_module
from modelfleet_client.calls import Call
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
MAX_CONNECTIONS = 100
BUFFER = 4 * 1024 * 1024
"""asyncio's read buffer limit per connection (it pauses reading at twice this)."""


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def dropped(self) -> bool:
        """Whether the server closed it while it sat idle (the loop has seen the end)."""
        return self.reader.at_eof() or self.writer.is_closing()

    async def send(self, parts: Body) -> None:
        self.writer.writelines(parts)
        await self.writer.drain()

    async def read(self, need: Need) -> bytes:
        kind, size = need
        try:
            if kind == "line":
                line = await self.reader.readline()
                if len(line) > MAX_LINE:
                    raise ProtocolError(f"a line longer than {MAX_LINE} bytes")
                return line
            if kind == "rest":
                return await self.reader.read()
            return await self.reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError(
                f"the answer ended after {len(exc.partial)} of {size} body bytes"
            ) from None
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"a line longer than {BUFFER} bytes") from None

    async def answer(self, parser: Parser) -> tuple[Answer, bool]:
        try:
            need = next(parser)
            while True:
                need = parser.send(await self.read(need))
        except StopIteration as done:
            result: tuple[Answer, bool] = done.value
            return result

    def close(self) -> None:
        self.writer.close()


class AsyncPool:
    """Keep-alive connections to the server of ``heads``, in one event loop."""

    def __init__(self, heads: Heads, timeout: float | None, tls: ssl.SSLContext | None) -> None:
        self.heads, self.timeout, self.tls = heads, timeout, tls
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def _connect(self) -> Connection:
        host, port = self.heads.host, self.heads.port
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=self.tls,
                    server_hostname=host if self.tls else None,
                    limit=BUFFER,
                )
        except ssl.SSLError:
            raise
        except OSError as exc:  # refused, unreachable, and TimeoutError
            raise Unreachable(str(exc) or f"no connection within {self.timeout} s") from None
        return Connection(reader, writer)

    async def _take(self) -> tuple[Connection, bool]:
        """A connection, and whether it carried requests before."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.dropped():
                return conn, True
            conn.close()
        return await self._connect(), False

    async def exchange(self, head: bytes, body: Body) -> Answer:
        """Write one request and read its answer, once a connection is free."""
        async with self._slots:
            conn, reused = await self._take()
            try:
                return await self._exchange(conn, head, body)
            except Stale:
                if not reused:
                    raise ConnectionResetError("the server closed the connection") from None
            return await self._exchange(await self._connect(), head, body)

    async def _exchange(self, conn: Connection, head: bytes, body: Body) -> Answer:
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    await conn.send([head, *body])
                    first = await conn.read(("line", 0))
                except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                    raise Stale() from None
                if not first:
                    raise Stale()
                answer, keep = await conn.answer(parse_answer(first))
        except BaseException:
            conn.close()
            raise
        if keep:
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                await conn.writer.wait_closed()
            except OSError:  # the server reset it first: closed all the same
                pass


class AsyncRestTransport(Endpoint):
    """Sends ``RestCalls`` over an ``AsyncPool``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float | None,
        backoff: Backoff,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(url, token, timeout, backoff)
        self.pool = AsyncPool(self.heads, timeout, tls)

    async def run(self, call: Call[T], *, retry: bool = True) -> T:
        return await retry_module.arun(self._send, call, self.backoff, retry)

    async def _send(self, request: Request) -> Any:
        head, body = self.message(request)
        try:
            return await self.pool.exchange(head, body)
        except (OSError, ProtocolError, Unreachable) as exc:
            raise failure(exc, self.url, self.timeout) from None

    async def aclose(self) -> None:
        await self.pool.aclose()
