"""Certificates rotated in place under load, on a real ``modelfleet serve`` process: not one
request fails, and new connections on both ports see the new certificate.

Load: four threads, each calling the iris model in a loop: HTTP on one kept-alive connection,
HTTP on a new connection per request, gRPC on one channel, gRPC on a new connection per call
(a channel of its own subchannel pool). The clients trust both CAs. Two rotations:

1. as the kubelet updates a mounted Secret (``..data`` swapped atomically), to a
   certificate from the other CA;
2. by hand, half-written for a while: the certificate first, the key only once the server
   has said that the pair does not match (it keeps serving the previous pair meanwhile)."""

from __future__ import annotations

import re
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509

from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from tests.helpers.runtime import GRPC_TRANSPORTS
from tests.helpers.tls import Issued, publish
from tests.helpers.waiting import wait_until
from tests.integration.runtime.test_tls import (
    INFER_JSON,
    Pki,
    TlsServer,
    grpc_credentials,
    infer_request,
    pki,
    serve_tls,
    served_serial,
    transport_args,
    trusting,
)

__all__ = ["pki"]  # the fixture, shared with test_tls.py

KINDS = ("http keep-alive", "http new connection", "grpc channel", "grpc new connection")
FRESH = [("grpc.use_local_subchannel_pool", 1)]  # no connection shared with other channels


class Load:
    """The four request loops; ``counts`` per kind, ``failures`` as text."""

    def __init__(self, server: TlsServer, pki: Pki) -> None:
        self.url = f"{server.served.url}/v2/models/iris/infer"
        self.target = f"127.0.0.1:{server.grpc_port}"
        self.verify = trusting(pki.a, pki.b)
        self.credentials = grpc_credentials(pki.a, pki.b)
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()

    def _loop(self, kind: str, call: Callable[[], None]) -> None:
        while not self.stop.is_set():
            try:
                call()
                self.counts[kind] += 1
            except Exception as exc:  # every failure counts, whatever its kind
                self.failures.append(f"{kind}: {exc!r}")

    def _post(self, client: httpx.Client) -> None:
        answer = client.post(self.url, json=INFER_JSON)
        assert answer.status_code == 200, answer.text

    def _infer(self, channel: grpc.Channel) -> None:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        stub.ModelInfer(infer_request(), timeout=10)

    def _fresh_http(self) -> None:
        with httpx.Client(verify=self.verify, timeout=10) as client:
            self._post(client)

    def _fresh_grpc(self) -> None:
        with grpc.secure_channel(self.target, self.credentials, FRESH) as channel:
            self._infer(channel)

    @contextmanager
    def running(self) -> Iterator[None]:
        with (
            httpx.Client(verify=self.verify, timeout=10) as client,
            grpc.secure_channel(self.target, self.credentials) as channel,
        ):
            calls = [
                lambda: self._post(client),
                self._fresh_http,
                lambda: self._infer(channel),
                self._fresh_grpc,
            ]
            threads = [
                threading.Thread(target=self._loop, args=(kind, call), daemon=True)
                for kind, call in zip(KINDS, calls, strict=True)
            ]
            for thread in threads:
                thread.start()
            try:
                yield
            finally:
                self.stop.set()
                for thread in threads:
                    thread.join(timeout=30)

    def advance(self, requests: int) -> None:
        """Wait until every kind has made ``requests`` more requests than now."""
        floor = {kind: self.counts[kind] + requests for kind in KINDS}
        wait_until(lambda: all(self.counts[k] >= floor[k] for k in KINDS), 120, "more load")


def not_after(issued: Issued) -> float:
    certificate = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    return certificate.not_valid_after_utc.timestamp()


def expiry(server: TlsServer, trust: ssl.SSLContext) -> float:
    """``modelfleet_tls_certificate_expiry_timestamp_seconds`` from the server's /metrics."""
    text = httpx.get(f"{server.served.url}/metrics", verify=trust, timeout=10).text
    found = re.search(r"^modelfleet_tls_certificate_expiry_timestamp_seconds (\S+)$", text, re.M)
    assert found is not None, "no expiry sample"
    return float(found.group(1))


def _pair(issued: Issued) -> dict[str, bytes]:
    return {"tls.crt": issued.cert.read_bytes(), "tls.key": issued.key.read_bytes()}


@pytest.mark.parametrize("transport", GRPC_TRANSPORTS)
def test_certificates_rotate_under_load_with_no_failed_request(
    tmp_path: Path, pki: Pki, transport: str
) -> None:
    secret = tmp_path / "secret"  # laid out as a mounted Secret volume
    publish(secret, _pair(pki.server))
    trust = trusting(pki.a, pki.b)
    cert, key = secret / "tls.crt", secret / "tls.key"
    with serve_tls(tmp_path, cert, key, trust, *transport_args(transport)) as server:

        def serials() -> tuple[int, int]:
            return served_serial(server.http_port, trust), served_serial(server.grpc_port, trust)

        assert serials() == (pki.server.serial, pki.server.serial)
        assert expiry(server, trust) == not_after(pki.server)
        load = Load(server, pki)
        with load.running():
            load.advance(20)
            from_b = pki.b.issue("rotated-b", days=30)
            publish(secret, _pair(from_b))
            wait_until(lambda: serials() == (from_b.serial,) * 2, 60, "the kubelet-style swap")
            # The expiry metric follows what is served: the new certificate's, 29 days later.
            assert expiry(server, trust) == not_after(from_b) > not_after(pki.server)
            load.advance(20)

            from_a = pki.a.issue("rotated-a")
            cert.write_bytes(from_a.cert.read_bytes())  # through ..data, in place
            wait_until(lambda: "does not match" in server.served.output(), 60, "the mismatch")
            assert serials() == (from_b.serial,) * 2  # the previous pair, still whole
            load.advance(20)
            key.write_bytes(from_a.key.read_bytes())
            wait_until(lambda: serials() == (from_a.serial,) * 2, 60, "the hand-made pair")
            load.advance(20)
        total = sum(load.counts.values())
        sys.stdout.write(
            f"\nrotation under load: {total} requests {dict(load.counts)}, "
            f"{len(load.failures)} failed\n"
        )
        assert load.failures == []
