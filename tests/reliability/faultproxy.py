"""A TCP proxy on 127.0.0.1 for storage-fault tests: it forwards to an upstream port, or
resets, stalls or refuses connections on command, cuts answers mid-body or slows them to a
byte rate, and records every connection and every HTTP request line it forwards, and the bytes
of answer it passed. With an ``ssl.SSLContext`` it terminates
TLS, as an S3 endpoint with a private CA does.

It runs an asyncio loop in a daemon thread, so synchronous tests (which drive a real server
process) can flip its mode. Everything is bounded: a stalled connection is held at most
``stall_limit`` seconds, and ``close()`` ends every connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["pass", "reset", "stall", "refuse", "cut", "slow"]


@dataclass(frozen=True)
class Event:
    at: float
    kind: str  # "connect" (accepted), "request" (an HTTP request line passed), "cut"


class FaultProxy:
    """``pass`` forwards; ``reset`` accepts then sends RST; ``stall`` accepts and never
    answers; ``refuse`` closes the listening socket (connection refused); ``cut`` forwards but
    resets the next ``cuts`` connections once ``cut_after`` bytes of answer have passed, then
    forwards whole again; ``slow`` forwards, each answer at most ``rate`` bytes a second (a
    slow network or an overloaded store). Changing the mode aborts the connections that are
    open, as an outage would."""

    def __init__(
        self,
        upstream_port: int,
        stall_limit: float = 30.0,
        tls: ssl.SSLContext | None = None,
        cut_after: int = 64 * 1024,
        cuts: int = 2,
        rate: int = 256 * 1024,
    ) -> None:
        self.upstream_port = upstream_port
        self.stall_limit = stall_limit
        self.tls = tls
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.rate = rate
        self.answered = 0
        """Bytes of answer passed to clients, over every connection."""
        self.mode: Mode = "pass"
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._mode_changed = asyncio.Event()
        self.port = 0

    # --- control, from the test's thread ---------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen)
        return self

    def set_mode(self, mode: Mode) -> None:
        self._call(lambda: self._switch(mode))

    def count(self, kind: str, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for e in self.events if e.kind == kind and e.at >= since)

    def close(self) -> None:
        self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _call(self, make: Callable[[], object]) -> None:
        async def run() -> None:
            result = make()
            if asyncio.iscoroutine(result):
                await result

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    # --- inside the loop -------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _switch(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        for writer in list(self._open):
            _abort(writer)
        self._mode_changed.set()
        self._mode_changed = asyncio.Event()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif previous == "refuse" and self._server is None:
            await self._listen()

    async def _shutdown(self) -> None:
        for writer in list(self._open):
            _abort(writer)
        if self._server is not None:
            self._server.close()
            self._server = None

    def _record(self, kind: str) -> None:
        with self._lock:
            self.events.append(Event(time.monotonic(), kind))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._record("connect")
        self._open.add(writer)
        try:
            if self.mode == "reset":
                _abort(writer)
            elif self.mode == "stall":
                changed = self._mode_changed
                try:
                    await asyncio.wait_for(changed.wait(), self.stall_limit)
                except TimeoutError:
                    pass
                _abort(writer)
            else:
                await self._forward(reader, writer)
        finally:
            self._open.discard(writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _abort(writer)
            return
        self._open.add(up_writer)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, count=True), self._pipe(up_reader, writer, cut=True)
            )
        finally:
            self._open.discard(up_writer)
            _abort(up_writer)
            _abort(writer)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        count: bool = False,
        cut: bool = False,
    ) -> None:
        passed = 0
        try:
            while data := await reader.read(65536):
                if count:  # request lines: "GET /bucket/key HTTP/1.1\r\n"
                    for _ in range(data.count(b" HTTP/1.1\r\n")):
                        self._record("request")
                if cut and self.mode == "cut" and self.cuts_left > 0:
                    if passed + len(data) > self.cut_after:
                        writer.write(data[: self.cut_after - passed])
                        await writer.drain()
                        self.cuts_left -= 1
                        self._record("cut")
                        return  # finally: RST mid-body
                passed += len(data)
                writer.write(data)
                await writer.drain()
                if cut:
                    with self._lock:
                        self.answered += len(data)
                    if self.mode == "slow":  # a throttle, not a wait for a condition
                        await asyncio.sleep(len(data) / self.rate)
        except (ConnectionError, OSError):
            pass
        finally:
            _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed or firewalled server would."""
    sock = writer.get_extra_info("socket")
    if sock is not None and writer.transport.get_extra_info("socket") is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


@contextmanager
def fault_proxy(upstream_port: int, **options: Any) -> Iterator[FaultProxy]:
    """A started :class:`FaultProxy` (``options``: its keyword arguments), closed after."""
    proxy = FaultProxy(upstream_port, **options).start()
    try:
        yield proxy
    finally:
        proxy.close()
