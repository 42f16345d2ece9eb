"""HTTP/1.1 as the client speaks it, without I/O: request heads, answer parsing, and what
each failure means. ``http_blocking.py`` (sockets) and ``http_async.py`` (asyncio streams)
drive the same parser, each with its own reads.

Hand-written, not httpx or http.client, because the per-call cost is the point of a client and
both are pure Python from end to end. Client CPU per batch-1 call to the same server, measured
on this machine while choosing: httpx's ``Client.post`` about 1,080 us (its transport, httpcore
and h11, 620 us of it), ``httpx.AsyncClient`` about 3,300 us (and its pool slows down with many
waiting calls), the standard library's ``http.client`` about 300 us (and it writes the head and
the body in two packets), a bare socket write and read 70 us; ``bench/client_overhead.py``
measures the whole client against tritonclient (bench/RESULTS.md). The protocol needs little of
HTTP and that little is all here: one request at a time per connection, answers framed by
``Content-Length`` or chunked (or by the end of the connection), interim 1xx answers skipped,
keep-alive unless the server says ``close``, TLS through ``ssl``. Left out on purpose: proxies,
redirects, cookies, compression and HTTP/2.
"""

from __future__ import annotations

import ssl
from collections.abc import Generator, Mapping
from urllib.parse import urlsplit

from modelfleet_client.errors import InferenceServerError
from modelfleet_client.rest import Answer, Body, Request, malformed
from modelfleet_client.retry import Backoff

MAX_LINE = 65536
"""Longest status or header line accepted from a server, in bytes."""
MAX_HEADERS = 200
LINE, REST = ("line", 0), ("rest", 0)
Need = tuple[str, int]
"""What the parser wants next: a line, exactly N bytes (``("exact", N)``), or the rest."""
Parser = Generator[Need, bytes, tuple[Answer, bool]]


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as framed here."""


class Unreachable(Exception):
    """No connection could be made (refused, unreachable, timed out connecting)."""


class Stale(Exception):
    """The connection failed before the first byte of an answer: the server had closed it."""


class Heads:
    """Request heads for one server: ``Host``, the URL's path prefix and the token, once."""

    def __init__(self, url: str, token: str | None) -> None:
        if token is not None and any(c in token for c in "\r\n"):
            raise ValueError("a token cannot hold line breaks")
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        auth = f"authorization: Bearer {token}\r\n" if token else ""
        self.common = f"host: {parts.netloc.rpartition('@')[2]}\r\n{auth}"

    def build(self, method: str, path: str, headers: Mapping[str, str], length: int) -> bytes:
        lines = [f"{method} {self.prefix}{path} HTTP/1.1\r\n", self.common]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if method != "GET" or length:
            lines.append(f"content-length: {length}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")


class Endpoint:
    """What both HTTP transports keep: the URL and its request heads, the timeout, the
    backoff."""

    def __init__(
        self, url: str, token: str | None, timeout: float | None, backoff: Backoff
    ) -> None:
        self.url, self.timeout, self.backoff = url, timeout, backoff
        self.heads = Heads(url, token)

    def message(self, request: Request) -> tuple[bytes, Body]:
        """A call's request as its head and body parts."""
        method, path, body, headers = request
        return self.heads.build(method, path, headers, sum(len(part) for part in body)), body


def parse_answer(first: bytes) -> Parser:
    """The final answer whose status line is ``first`` (interim 1xx answers skipped), and
    whether the connection may carry another request."""
    version, status, reason, headers = yield from _head(first)
    while 100 <= status < 200:
        version, status, reason, headers = yield from _head((yield LINE))
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if status in (204, 304):
        content = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        content = yield from _chunked()
    elif "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit():
            raise ProtocolError(f"Content-Length {length!r}")
        content = yield ("exact", int(length))
    else:  # framed by the end of the connection
        content, keep = (yield REST), False
    return Answer(status, reason, headers, content), keep


def _head(line: bytes) -> Generator[Need, bytes, tuple[str, int, str, dict[str, str]]]:
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"status line {line[:100]!r}")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        raw = yield LINE
        if raw in (b"\r\n", b"\n"):
            return version, int(code), reason, headers
        if not raw:
            raise ProtocolError("the answer ended inside its headers")
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"header line {raw[:100]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raise ProtocolError(f"more than {MAX_HEADERS} headers")


def _chunked() -> Generator[Need, bytes, bytes]:
    chunks: list[bytes] = []
    while True:
        size_line = (yield LINE).split(b";")[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ProtocolError(f"chunk size {size_line[:20]!r}") from None
        if size == 0:
            while (yield LINE) not in (b"\r\n", b"\n", b""):  # trailers, ignored
                pass
            return b"".join(chunks)
        chunks.append((yield ("exact", size)))
        yield LINE  # the CRLF after each chunk


def failure(exc: Exception, url: str, timeout: float | None) -> InferenceServerError:
    """What a transport failure means to the caller (503 is retried, the rest is not)."""
    if isinstance(exc, Unreachable):
        return InferenceServerError(503, f"cannot reach {url}: {exc}")
    if isinstance(exc, ssl.SSLError):  # the same certificate fails the same way again
        return InferenceServerError(502, f"TLS with {url} failed: {exc}")
    if isinstance(exc, TimeoutError):
        return InferenceServerError(504, f"no answer from {url} within {timeout} s")
    if isinstance(exc, ProtocolError):
        return malformed(str(exc))
    return InferenceServerError(503, f"lost the connection to {url}: {exc}")
