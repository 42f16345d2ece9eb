"""One send per HTTP response: a response's head waits for its body, so both leave in one
``write`` (one system call, one wake-up of the client) instead of two.

uvicorn's HTTP/1.1 protocol writes a response's head when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two sends on the
socket for every response, each a system call that on loopback also wakes the reader. A
``HeldHeadTransport`` stands in for the connection's transport: the first write after a
response began is held; the next write (the body, which an app sends in the same step, with
no wait between) goes out together with it, and a callback at the end of the event loop's
turn sends a head still held (an app that waits between head and body: a stream, a slow
body), so nothing is delayed by more than that turn. ``close`` and ``write_eof`` send what
is held first. Everything else is the transport's own.

Why hand-written: uvicorn has no setting for it (its head and body writes are in
``RequestResponseCycle.send``), and TCP_CORK or Nagle would delay answers by a timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

SMALL = 64 * 1024
"""A body at most this long is joined to its head (one copy); a larger one goes out with it
through ``writelines``."""


class HeldHeadTransport:
    """``transport`` with each response's head held for its body (the module docstring):
    ``expect_head`` (when a request's headers are in) marks the next write as a head."""

    __slots__ = ("_head_next", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: bytes | None = None
        self._head_next = False

    def expect_head(self) -> None:
        self._head_next = True

    def write(self, data: bytes) -> None:
        if self._head_next:  # hold it, for one loop turn at most
            self._head_next = False
            self.flush()
            self._held = data
            self._loop.call_soon(self.flush)
            return
        held = self._held
        if held is None:
            self._transport.write(data)
            return
        self._held = None
        if len(data) <= SMALL:
            self._transport.write(held + data)
        else:
            self._transport.writelines([held, data])

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
