"""Issue 12 part 5: slow clients cannot hold the server (``http_limits``, and gRPC's own
limits in ``grpc_api.connection_limits``), against a real ``modelfleet serve`` on loopback
with small timeouts set by flags.

- 2,000 connections that send half a request header and 500 that send nothing are all closed
  after the header timeout (408 ``{"error"}`` for the first, no answer for the second),
  within a generous margin, while iris requests on fresh connections are all answered 200.
- A body that stops, or trickles below the minimum rate, is cut with a 408; one slower than
  the timeout but above the rate is served; one trickling on after an early 413 is cut.
- A connection over ``--max-connections`` gets 503 ``{"error": "too many open
  connections"}`` and ``Connection: close`` at once, in httpx too; gRPC, on either transport,
  closes one at once and cuts an HTTP/2 handshake that does not come.
- Behind the TLS listener the same limits hold (503 over the cap, 408 on half a header).

Figures (close times, latency during the flood, memory) come from bench/slow_clients.py.
"""

from __future__ import annotations

import json
import re
import resource
import select
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from modelfleet_runtime.http_limits import raise_descriptor_limit
from tests.helpers.runtime import GRPC_TRANSPORTS, Served, free_port, serve_process, wait_until
from tests.helpers.slow_clients import (
    HALF_HEADER,
    IRIS,
    Traffic,
    Watched,
    close_all,
    metric,
    open_slow,
    watch_until_closed,
)
from tests.helpers.tls import make_tls

HEADER_TIMEOUT = 3.0
HALF, SILENT = 2000, 500
MARGIN = 10.0
"""Seconds past the timeout (and the sweep's 0.75 s) that the last close may take on a loaded
2-core machine: closing 2,500 connections is tens of ms of the server's time."""


def closed_total(served: Served) -> dict[str, float]:
    return metric(served.url, "modelfleet_http_connections_closed")


def error_of(answer: bytes) -> tuple[int, dict[str, str], str]:
    """Status, lower-cased headers and the ``error`` of one raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, json.loads(body)["error"]


@pytest.fixture
def descriptors() -> Iterator[int]:
    """The test's own soft descriptor limit, raised for thousands of sockets."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield raise_descriptor_limit(HALF + SILENT + 1000)
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


@pytest.mark.timeout(180)
def test_thousands_of_half_headers_are_closed_while_requests_are_served(
    tmp_path: Path, descriptors: int
) -> None:
    assert descriptors >= HALF + SILENT + 1000, "the hard descriptor limit is too low"
    timeout = str(HEADER_TIMEOUT)
    args = ["--header-read-timeout", timeout, "--max-connections", "4000", "--grpc-port", "0"]
    with serve_process(tmp_path, *args, "--log-level", "WARNING") as served:
        port = int(served.url.rsplit(":", 1)[1])
        traffic = Traffic(served.url)
        traffic.start()
        slow: list[Watched] = []
        try:
            slow = open_slow(port, HALF, HALF_HEADER) + open_slow(port, SILENT, b"")
            still_open = watch_until_closed(slow, HEADER_TIMEOUT + 0.75 + MARGIN)
        finally:
            results = traffic.stop()
            close_all(slow)
        assert still_open == [], f"{len(still_open)} slow connections still open"
        assert [r[0] for r in results if r[0] != 200] == [], "normal requests failed"
        assert len(results) >= 20, f"only {len(results)} normal requests during the flood"
        earliest = min(w.closed_after or 0 for w in slow)
        assert earliest >= HEADER_TIMEOUT - 0.1, f"one closed after {earliest:.2f} s"
        for watched in slow[:HALF]:
            status, headers, error = error_of(watched.answer)
            assert (status, headers["connection"]) == (408, "close")
            assert error == "request header timeout: headers not complete within 3 s"
        assert {w.answer for w in slow[HALF:]} == {b""}  # no request, no answer
        assert closed_total(served)["header_timeout"] == HALF + SILENT
        assert httpx.post(f"{served.url}/v2/models/iris/infer", json=IRIS).status_code == 200


def send_body(port: int, chunks: list[bytes], pause: float, length: int) -> bytes:
    """POST ``chunks`` to iris ``pause`` s apart (a slow client), stopping early if the
    server answers, then read the answer until the server closes."""
    head = f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        for index, chunk in enumerate(chunks):
            # The pause paces the client; it ends early when the server has answered.
            if index and select.select([sock], [], [], pause)[0]:
                break
            sock.sendall(chunk)
        answer = b""
        while data := sock.recv(65536):
            answer += data
            if b"connection: close" not in answer.lower():
                break  # a kept-alive answer: Content-Length bodies fit one read on loopback
        return answer


def test_slow_bodies_are_cut_and_a_slow_but_steady_one_is_served(tmp_path: Path) -> None:
    body = json.dumps(IRIS | {"id": "x" * 5000}).encode()  # ~5 kB
    args = ["--body-read-timeout", "1", "--body-min-rate", "1000", "--grpc-port", "0"]
    with serve_process(tmp_path, *args) as served:
        port = int(served.url.rsplit(":", 1)[1])
        # Stops after 1 kB: cut for silence (its rate allowance would last 2 s).
        status, headers, error = error_of(send_body(port, [body[:1000]], 0, len(body)))
        assert (status, headers["connection"], error) == (
            408,
            "close",
            "request body timeout: no data for 1 s",
        )
        # 20 bytes every 0.2 s (100 bytes/s, under 1000): never silent, but cut for its rate.
        trickle = [body[i : i + 20] for i in range(0, 400, 20)]
        status, _, error = error_of(send_body(port, trickle, 0.2, len(body)))
        assert (status, error) == (408, "request body timeout: slower than 1000 bytes/s")
        # 1 kB every 0.5 s (2000 bytes/s): takes ~2.5 s, past the 1 s timeout, and is served.
        steady = [body[i : i + 1000] for i in range(0, len(body), 1000)]
        answer = send_body(port, steady, 0.5, len(body))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        assert trickle_after_early_answer(port) == b""  # closed, nothing more said
        assert closed_total(served)["body_timeout"] == 3


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length body (it may come in more than one read)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(65536)
        assert data, f"closed before a whole answer: {answer!r}"
        answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
    while len(body) < length and (data := sock.recv(65536)):
        body += data
    return head + b"\r\n\r\n" + body


def trickle_after_early_answer(port: int) -> bytes:
    """A body over --max-body-size is answered 413 at once; the client then trickles it on
    (20 bytes every 0.2 s, for up to 20 s). What the server sends after the 413 once it closes
    the connection (uvicorn alone would keep it: bytes arriving cancel its keep-alive timer)."""
    head = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        assert read_answer(sock).startswith(b"HTTP/1.1 413 ")
        try:
            for _ in range(100):
                # The pause paces the client; it ends early when the server has closed.
                if select.select([sock], [], [], 0.2)[0]:
                    return sock.recv(65536)
                sock.sendall(b"x" * 20)
        except (BrokenPipeError, ConnectionResetError):  # closed between two bytes
            return b""
    raise AssertionError("the connection was still open after 20 s of trickling")


def test_a_connection_over_the_cap_gets_503_and_is_closed(tmp_path: Path) -> None:
    grpc_port, cap = free_port(), 20
    args = ["--max-connections", str(cap), "--grpc-port", str(grpc_port)]
    args += ["--header-read-timeout", "60"]  # the held connections stay held
    with serve_process(tmp_path, *args, "--log-level", "WARNING") as served:
        port = int(served.url.rsplit(":", 1)[1])
        held = open_slow(port, cap, HALF_HEADER)
        refused = []
        try:
            # Raw: the answer comes at once, before any request, then the server's EOF.
            refused = open_slow(port, 1, b"")
            assert watch_until_closed(refused, 5) == []
            status, headers, error = error_of(refused[0].answer)
            assert (status, headers["connection"]) == (503, "close")
            assert error == "too many open connections"
            # As a client sees it: the request is answered 503, not reset.
            answer = httpx.get(f"{served.url}/v2/health/live", timeout=10)
            assert answer.status_code == 503
            assert answer.json() == {"error": "too many open connections"}
        finally:
            close_all(held + refused)
        live = f"{served.url}/v2/health/live"
        wait_until(lambda: httpx.get(live).status_code == 200, 10, "a free connection served")
        assert closed_total(served)["over_capacity"] == 2


def grpc_live(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            return bool(stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live)
        except grpc.RpcError:
            return False


@pytest.mark.parametrize("transport", GRPC_TRANSPORTS)
def test_a_grpc_connection_over_the_cap_is_closed_at_once(tmp_path: Path, transport: str) -> None:
    """Over the cap, closed at once without a byte (HTTP/2 has no answer before its
    handshake), on either transport; the connections under it stay open."""
    grpc_port, cap = free_port(), 20
    args = ["--max-connections", str(cap), "--grpc-port", str(grpc_port)]
    args += ["--header-read-timeout", "60", "--grpc-transport", transport]
    with serve_process(tmp_path, *args, "--log-level", "WARNING"):
        held = open_slow(grpc_port, cap, b"")
        over = []
        try:
            over = open_slow(grpc_port, 1, b"")
            assert watch_until_closed(over, 5) == []
            assert over[0].answer == b""
            assert len(watch_until_closed(held, 0.5)) == cap
        finally:
            close_all(held + over)
        wait_until(lambda: grpc_live(grpc_port), 10, "a free connection served")


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
"""A client's HTTP/2 start: the preface and an empty SETTINGS frame."""


@pytest.mark.parametrize("transport", GRPC_TRANSPORTS)
def test_grpc_cuts_a_handshake_that_does_not_come(tmp_path: Path, transport: str) -> None:
    grpc_port = free_port()
    args = ["--grpc-port", str(grpc_port), "--header-read-timeout", "1"]
    with serve_process(tmp_path, *args, "--grpc-transport", transport) as served:
        assert served.process.poll() is None
        silent = open_slow(grpc_port, 1, b"")
        try:
            assert watch_until_closed(silent, 1 + MARGIN) == []
        finally:
            close_all(silent)
        assert (silent[0].closed_after or 0) >= 1 - 0.1
        if transport == "grpc":
            assert b"handshake timeout" in silent[0].answer  # gRPC's GOAWAY says why
        else:  # a client that started HTTP/2 stays, with TCP keepalive probing it
            started = open_slow(grpc_port, 1, PREFACE)
            try:
                assert watch_until_closed(started, 1 + 1.0) == started
                client_port = started[0].sock.getsockname()[1]
                assert keepalive_timer(grpc_port, client_port)
            finally:
                close_all(started)
        assert grpc_live(grpc_port)


def keepalive_timer(server_port: int, client_port: int) -> bool:
    """Whether the server's side of a loopback connection runs a keepalive timer
    (/proc/net/tcp's ``tr`` field 2 on an idle established socket: SO_KEEPALIVE is on)."""
    ends = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == ends:
            return fields[5].split(":")[0] == "02"
    raise AssertionError(f"no connection {ends} in /proc/net/tcp")


def test_the_limits_hold_on_the_tls_port(tmp_path: Path) -> None:
    """Behind ``tls_server``'s listener the same protocol serves: over the cap a client gets
    the 503 (TLS has no half-close: the server closes once it is written), and half a header
    sent over TLS gets the 408."""
    files = make_tls(tmp_path / "tls")
    context = ssl.create_default_context(cafile=str(files.ca))
    args = ["--tls-cert-file", str(files.cert), "--tls-key-file", str(files.key)]
    args += ["--max-connections", "2", "--header-read-timeout", "2", "--grpc-port", "0"]
    with serve_process(tmp_path, *args, tls=context) as served:
        port = int(served.url.rsplit(":", 1)[1])
        live = f"{served.url}/v2/health/live"
        wait_until(lambda: metric_open(served, context) <= 1, 10, "the start-up checks closed")
        held = [
            context.wrap_socket(
                socket.create_connection(("127.0.0.1", port), timeout=10),
                server_hostname="127.0.0.1",
            )
            for _ in range(2)
        ]
        try:
            held[0].sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
            answer = httpx.get(live, verify=context, timeout=10)
            assert (answer.status_code, answer.json()) == (
                503,
                {"error": "too many open connections"},
            )
            status, headers, error = error_of(read_answer(held[0]))
            assert (status, headers["connection"]) == (408, "close")
            assert error == "request header timeout: headers not complete within 2 s"
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: metric_open(served, context) == 0, 10, "the held ones closed")
        assert httpx.get(live, verify=context).status_code == 200


def metric_open(served: Served, context: ssl.SSLContext) -> float:
    """Open HTTP connections by the server's gauge, not counting the one asking."""
    return metric(served.url, "modelfleet_http_connections_open", context)[""] - 1
