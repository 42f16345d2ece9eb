"""Slow clients on loopback, for tests/reliability/test_slow_clients.py and
bench/slow_clients.py: many connections that send half a request (or nothing) and are then
watched, all at once with one selector, until the server closes them; and normal requests,
timed, on fresh connections meanwhile."""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

HALF_HEADER = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"
IRIS = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]
}


@dataclass
class Watched:
    """One slow connection: when it opened, what the server sent, when the server closed it
    (seconds after opening; None while open)."""

    sock: socket.socket
    opened: float
    answer: bytes = b""
    closed_after: float | None = None


def open_slow(port: int, count: int, payload: bytes) -> list[Watched]:
    """``count`` connections to ``port``, each sending ``payload`` (may be empty) and no more."""
    opened: list[Watched] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            opened.append(Watched(sock, time.monotonic()))
            if payload:
                sock.sendall(payload)
    except BaseException:
        close_all(opened)
        raise
    return opened


def watch_until_closed(connections: list[Watched], timeout: float) -> list[Watched]:
    """Read every connection until the server closes it, or ``timeout`` s pass; the ones
    still open (the caller closes every one with ``close_all``)."""
    with selectors.DefaultSelector() as selector:
        for watched in connections:
            watched.sock.setblocking(False)
            selector.register(watched.sock, selectors.EVENT_READ, watched)
        deadline = time.monotonic() + timeout
        while selector.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(min(left, 0.5)):
                watched = key.data
                try:
                    data = watched.sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if data:
                    watched.answer += data
                    continue
                watched.closed_after = time.monotonic() - watched.opened
                selector.unregister(watched.sock)
        return [w for w in connections if w.closed_after is None]


def close_all(connections: list[Watched]) -> None:
    for watched in connections:
        watched.sock.close()


class Traffic(threading.Thread):
    """Normal requests (iris inference, each on a new connection) every ``pause`` s until
    ``stop()``: their status codes, seconds, and when they started (``time.monotonic``)."""

    def __init__(self, base_url: str, pause: float = 0.05, most: int = 10_000) -> None:
        super().__init__(daemon=True)
        self.url, self.pause, self.most = f"{base_url}/v2/models/iris/infer", pause, most
        self.results: list[tuple[int, float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        headers = {"connection": "close"}  # a fresh connection each: accept is under test too
        with httpx.Client(timeout=30, headers=headers) as client:
            while not self._halt.is_set() and len(self.results) < self.most:
                started = time.monotonic()
                try:
                    status = client.post(self.url, json=IRIS).status_code
                except httpx.TransportError:
                    status = 0
                self.results.append((status, time.monotonic() - started, started))
                self._halt.wait(self.pause)  # pacing, not waiting on a condition

    def stop(self) -> list[tuple[int, float, float]]:
        self._halt.set()
        self.join(60)
        return self.results


def metric(base_url: str, family: str, verify: ssl.SSLContext | bool = True) -> dict[str, float]:
    """One metric family's values from the server's /metrics, by the value of their one label
    (``""`` for a series without labels)."""
    text = httpx.get(f"{base_url}/metrics", verify=verify).text
    found = next(f for f in text_string_to_metric_families(text) if f.name == family)
    return {
        ",".join(s.labels.values()): s.value
        for s in found.samples
        if s.name in (family, f"{family}_total")
    }
