"""TLS on both ports of a real ``modelfleet serve`` process on 127.0.0.1, with private CAs made
here (``tests/helpers/tls.py``): the project's client, the generated gRPC stub and Triton's
clients (HTTP and gRPC, from their own venv) over TLS; mutual TLS refusing untrusted and
missing client certificates; plain HTTP on the TLS port answered with a clear 400; stalled
handshakes closed; unusable files refused at start-up; and certificates rotated in place
under load (HTTP and gRPC, kept-alive and new connections) with no failed request.

The iris example that ships with the runtime is the model (input ``input``, [n, 4] FP32)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from modelfleet_client import AsyncClient, Client, InferenceServerError
from modelfleet_client.cli import infer_command
from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from modelfleet_client.tls import Cert
from tests.helpers import peers
from tests.helpers.runtime import GRPC_TRANSPORTS, Served, free_port, serve_process
from tests.helpers.tls import Ca, Issued

HERE = Path(__file__).parent
ROW = [5.1, 3.5, 1.4, 0.2]
INFER_JSON = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}
REFUSAL = "Client sent an HTTP request to an HTTPS server"


@dataclass(frozen=True)
class Pki:
    """Two unrelated CAs; the server and a client certificate signed by ``a``, a client
    certificate signed by ``b`` (a stranger to a server that trusts ``a``)."""

    a: Ca
    b: Ca
    server: Issued
    client: Issued
    stranger: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    a, b = Ca(folder / "a", "modelfleet test CA A"), Ca(folder / "b", "modelfleet test CA B")
    return Pki(a, b, a.issue("server"), a.issue("client", client=True), b.issue("x", client=True))


def trusting(*cas: Ca, cert: Issued | None = None, alpn: str | None = None) -> ssl.SSLContext:
    """A client context trusting ``cas`` only, showing ``cert`` if given."""
    context = ssl.create_default_context(cadata="".join(ca.cert.read_text() for ca in cas))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    if alpn is not None:
        context.set_alpn_protocols([alpn])
    return context


@dataclass
class TlsServer:
    served: Served
    grpc_port: int

    @property
    def http_port(self) -> int:
        return int(self.served.url.rsplit(":", 1)[1])


@contextmanager
def serve_tls(
    folder: Path, cert: Path, key: Path, trust: ssl.SSLContext, *args: str
) -> Iterator[TlsServer]:
    grpc_port = free_port()
    files = ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    with serve_process(folder, *files, "--grpc-port", str(grpc_port), *args, tls=trust) as served:
        yield TlsServer(served, grpc_port)


def transport_args(transport: str) -> list[str]:
    return ["--grpc-transport", transport]


@pytest.fixture(scope="module", params=GRPC_TRANSPORTS)
def https(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, request: pytest.FixtureRequest
) -> Iterator[TlsServer]:
    """TLS on both ports, no client certificates asked for."""
    folder = tmp_path_factory.mktemp("https")
    args = transport_args(request.param)
    with serve_tls(folder, pki.server.cert, pki.server.key, trusting(pki.a), *args) as server:
        yield server


@pytest.fixture(scope="module", params=GRPC_TRANSPORTS)
def mutual(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, request: pytest.FixtureRequest
) -> Iterator[TlsServer]:
    """Mutual TLS: clients must show a certificate signed by CA A."""
    folder = tmp_path_factory.mktemp("mutual")
    trust = trusting(pki.a, cert=pki.client)
    args = ["--tls-client-ca-file", str(pki.a.cert), *transport_args(request.param)]
    with serve_tls(folder, pki.server.cert, pki.server.key, trust, *args) as server:
        yield server


def infer_request() -> pb.ModelInferRequest:
    contents = pb.InferTensorContents(fp32_contents=ROW)
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP32", shape=[1, 4], contents=contents
    )
    return pb.ModelInferRequest(model_name="iris", inputs=[tensor])


def grpc_credentials(*cas: Ca, cert: Issued | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=b"".join(ca.cert.read_bytes() for ca in cas),
        private_key=cert.key.read_bytes() if cert else None,
        certificate_chain=cert.cert.read_bytes() if cert else None,
    )


def served_serial(port: int, trust: ssl.SSLContext) -> int:
    """The serial number of the certificate a new connection to ``port`` is shown."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        trust.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_the_projects_client_over_https_and_grpcs(https: TlsServer, pki: Pki) -> None:
    health = httpx.get(f"{https.served.url}/v2/health/ready", verify=trusting(pki.a))
    assert health.status_code == 200
    row = np.array([ROW], dtype=np.float32)
    urls = [https.served.url, f"grpcs://127.0.0.1:{https.grpc_port}"]
    for url in urls:
        with Client(url, ca_file=str(pki.a.cert)) as client:
            outputs = client.infer("iris", row)
        assert outputs["label"].tolist() == [0], url
        assert outputs["probabilities"].shape == (1, 3), url


def test_the_generated_stub_over_tls(https: TlsServer, pki: Pki) -> None:
    target = f"127.0.0.1:{https.grpc_port}"
    with grpc.secure_channel(target, grpc_credentials(pki.a)) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        reply = stub.ModelInfer(infer_request(), timeout=10)
    assert (reply.model_name, [o.name for o in reply.outputs]) == (
        "iris",
        ["label", "probabilities"],
    )
    # A server certificate from another CA is refused by the client, as it should be, and a
    # plaintext client is not answered.
    for channel in (
        grpc.secure_channel(target, grpc_credentials(pki.b)),
        grpc.insecure_channel(target),
    ):
        with channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as refused:
                stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tritonclient_over_https_and_grpc_with_mutual_tls(mutual: TlsServer, pki: Pki) -> None:
    command = [str(peers.python("tritonclient")), str(HERE / "peers" / "triton_tls.py")]
    command += [str(mutual.http_port), str(mutual.grpc_port), str(pki.a.cert)]
    command += [str(pki.client.cert), str(pki.client.key)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    expected = {"live": True, "ready": True, "input": "input", "label": [0]}
    assert seen == {"http": expected, "grpc": expected}


@pytest.mark.parametrize("who", ["no certificate", "a certificate from another CA"])
def test_mutual_tls_refuses_clients_without_a_trusted_certificate(
    mutual: TlsServer, pki: Pki, who: str
) -> None:
    cert = None if who == "no certificate" else pki.stranger
    # The health paths are not exempt: the kubelet's probes must not use HTTPS here.
    for path in ("/v2/health/live", "/v2/models/iris"):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{mutual.served.url}{path}", verify=trusting(pki.a, cert=cert))
    target = f"127.0.0.1:{mutual.grpc_port}"
    with grpc.secure_channel(target, grpc_credentials(pki.a, cert=cert)) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as refused:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_accepts_a_trusted_client_certificate(mutual: TlsServer, pki: Pki) -> None:
    verify = trusting(pki.a, cert=pki.client)
    answer = httpx.post(f"{mutual.served.url}/v2/models/iris/infer", json=INFER_JSON, verify=verify)
    assert answer.status_code == 200, answer.text
    target = f"127.0.0.1:{mutual.grpc_port}"
    with grpc.secure_channel(target, grpc_credentials(pki.a, cert=pki.client)) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


def test_the_projects_client_and_cli_with_mutual_tls(
    mutual: TlsServer, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cert`` as requests takes it: (cert file, key file), or one PEM holding both; over
    https:// and grpcs://, blocking and async, and ``modelfleet infer --cert --key``."""
    both = tmp_path / "client.pem"
    both.write_bytes(pki.client.cert.read_bytes() + pki.client.key.read_bytes())
    row = np.array([ROW], dtype=np.float32)
    urls = [mutual.served.url, f"grpcs://127.0.0.1:{mutual.grpc_port}"]
    good: list[Cert] = [(str(pki.client.cert), str(pki.client.key)), str(both)]
    bad: list[Cert | None] = [None, (str(pki.stranger.cert), str(pki.stranger.key))]
    for url in urls:
        for cert in good:
            with Client(url, ca_file=str(pki.a.cert), cert=cert) as client:
                assert client.infer("iris", row)["label"].tolist() == [0], (url, cert)
            assert asyncio.run(async_label(url, str(pki.a.cert), cert, row)) == [0], (url, cert)
        # Without a certificate, or with one from another CA: refused at the handshake.
        for refused_cert in bad:
            with Client(url, ca_file=str(pki.a.cert), cert=refused_cert, retries=0) as client:
                with pytest.raises(InferenceServerError) as refused:
                    client.infer("iris", row)
            assert refused.value.status in (502, 503), (url, refused_cert, refused.value)
    for url in urls:
        tls = ["--ca-file", str(pki.a.cert), "--cert", str(pki.client.cert)]
        tls += ["--key", str(pki.client.key)]
        assert infer_command(["iris", "--url", url, "-i", json.dumps([ROW]), *tls]) == 0
        assert "label" in capsys.readouterr().out


async def async_label(url: str, ca: str, cert: Cert, row: np.ndarray[Any, Any]) -> list[int]:
    async with AsyncClient(url, ca_file=ca, cert=cert) as aclient:
        return list((await aclient.infer("iris", row))["label"].tolist())


def test_a_client_certificate_needs_a_tls_url(pki: Pki, tmp_path: Path) -> None:
    encrypted = encrypt(pki.client.key, tmp_path / "encrypted.key")
    cert = (str(pki.client.cert), str(pki.client.key))
    for url in ("http://127.0.0.1:1", "grpc://127.0.0.1:1"):
        with pytest.raises(ValueError, match="needs an https:// or grpcs:// url"):
            Client(url, cert=cert)
    for url in ("https://127.0.0.1:1", "grpcs://127.0.0.1:1"):  # refused before any call
        with pytest.raises(FileNotFoundError):
            Client(url, cert="/nonexistent/client.pem")
        with pytest.raises(ssl.SSLError):  # a key that does not match the certificate
            Client(url, cert=(str(pki.client.cert), str(pki.stranger.key)))
        with pytest.raises(ValueError, match="encrypted"):  # not a prompt on the terminal
            Client(url, cert=(str(pki.client.cert), str(encrypted)))
        Client(url, cert=(pki.client.cert, pki.client.key)).close()  # paths are fine too


def encrypt(key: Path, out: Path) -> Path:
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    out.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return out


def test_plain_http_on_the_tls_port_gets_a_clear_400(https: TlsServer, pki: Pki) -> None:
    plain = https.served.url.replace("https://", "http://")
    for answer in (
        httpx.get(f"{plain}/v2/health/ready"),
        httpx.post(f"{plain}/v2/models/iris/infer", json=INFER_JSON),
    ):
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("text/plain")
        assert REFUSAL in answer.text
    # and the port still speaks TLS to everyone else
    ready = httpx.get(f"{https.served.url}/v2/health/ready", verify=trusting(pki.a))
    assert ready.status_code == 200


def _closed_by_server(port: int, send: bytes) -> bool:
    """Whether the server closes a connection that sent ``send`` and then nothing (waiting
    at most 30 s: far past the 1 s handshake timeout of the server under test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(send)
        try:
            return sock.recv(4096) == b""  # the server's FIN, without a word
        except ConnectionResetError:
            return True


@pytest.mark.parametrize("transport", GRPC_TRANSPORTS)
def test_stalled_handshakes_are_closed_after_the_timeout(
    tmp_path: Path, pki: Pki, transport: str
) -> None:
    trust = trusting(pki.a)
    args = ("--tls-handshake-timeout", "1", *transport_args(transport))
    with serve_tls(tmp_path, pki.server.cert, pki.server.key, trust, *args) as server:
        # silent from the start; or the first bytes of a TLS record and then nothing
        for send in (b"", b"\x16\x03\x01\x00"):
            assert _closed_by_server(server.http_port, send)
            assert _closed_by_server(server.grpc_port, send)
        ready = httpx.get(f"{server.served.url}/v2/health/ready", verify=trust)
        assert ready.status_code == 200


def test_unusable_tls_files_fail_the_start_and_say_why(tmp_path: Path, pki: Pki) -> None:
    serve = [sys.executable, "-m", "modelfleet_runtime.cli", "serve", "--port", "0"]
    cases = {
        "does not match": ["--tls-cert-file", str(pki.server.cert)]
        + ["--tls-key-file", str(pki.client.key)],
        "go together": ["--tls-cert-file", str(pki.server.cert)],
        "no PEM certificate": ["--tls-cert-file", str(pki.server.cert)]
        + ["--tls-key-file", str(pki.server.key), "--tls-client-ca-file", str(pki.server.key)],
    }
    for message, args in cases.items():
        env = {**os.environ, "MODELFLEET_MODEL_DIR": str(tmp_path / "models")}
        done = subprocess.run(
            [*serve, *args], capture_output=True, text=True, timeout=60, env=env, check=False
        )
        assert (done.returncode, message in done.stderr) == (2, True), done.stderr[-2000:]
        assert "Traceback" not in done.stderr
