"""s3:// over TLS with a private CA (``--s3-ca-bundle``), and downloads cut mid-body, against
SeaweedFS behind the fault proxy (``tests/reliability/faultproxy.py``).

A private CA is how in-cluster object stores (MinIO, Ceph) usually serve HTTPS: without the
bundle the certificate is refused with a message that says so; with it the model loads. A
connection reset halfway through an object (a load balancer, a node drain) must cost a retry
of that part only, and the version must arrive byte for byte.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelfleet_runtime.storage import StorageError, open_source
from tests.helpers.aws import s3_client
from tests.reliability.faultproxy import FaultProxy, fault_proxy

from .helpers import external_data_model, settings, upload_folder


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A private CA and a server certificate for 127.0.0.1: (server context, CA bundle)."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("modelfleet test CA"))
        .issuer_name(_name("modelfleet test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    bundle = _pem(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    chain = _pem(folder / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    private = _pem(
        folder / "server.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, private)
    return context, bundle


@pytest.fixture
def model(seaweed: str, tmp_path: Path) -> tuple[str, np.ndarray]:
    """A 3 MiB external-data model uploaded as version 1 of a fresh bucket: (URI, weights)."""
    client = s3_client(seaweed)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    weights = external_data_model(tmp_path / "repo" / "1")
    upload_folder(client, bucket, tmp_path / "repo", "big")
    return f"s3://{bucket}/big", weights


@pytest.fixture
def proxy(seaweed: str, request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    options: dict[str, Any] = getattr(request, "param", {})
    with fault_proxy(int(seaweed.rsplit(":", 1)[1]), **options) as p:
        yield p


def _served_right(path: Path, weights: np.ndarray) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.ones((1, weights.size), dtype=np.float32)
    np.testing.assert_array_equal(session.run(None, {"input0": x})[0], x + weights)


async def test_private_ca_needs_the_bundle(
    seaweed: str, model: tuple[str, np.ndarray], tmp_path: Path, tls: tuple[ssl.SSLContext, Path]
) -> None:
    context, bundle = tls
    uri, weights = model
    with fault_proxy(int(seaweed.rsplit(":", 1)[1]), tls=context) as https:
        assert https.endpoint.startswith("https://")
        untrusted = open_source(
            settings(tmp_path / "a", uri, s3_endpoint_url=https.endpoint, retry_deadline=1.0)
        )
        with pytest.raises(StorageError, match="certificate verify failed") as refused:
            await untrusted.list_versions()
        trusted = open_source(
            settings(tmp_path / "b", uri, s3_endpoint_url=https.endpoint, s3_ca_bundle=bundle)
        )
        versions = await trusted.list_versions()
        path = await trusted.fetch(versions[1])
    assert refused.value.reason == "TLSError" and "s3_ca_bundle" in str(refused.value)
    _served_right(path, weights)


@pytest.mark.parametrize(
    "proxy", [{"cut_after": 256 * 1024, "cuts": 3}], indirect=True, ids=["3 cuts"]
)
async def test_cuts_mid_body_retry_the_part_and_the_version_arrives_whole(
    proxy: FaultProxy, model: tuple[str, np.ndarray], tmp_path: Path
) -> None:
    uri, weights = model
    source = open_source(
        settings(
            tmp_path,
            uri,
            s3_endpoint_url=proxy.endpoint,
            download_part_size=1024 * 1024,
            download_concurrency=3,
        )
    )
    versions = await source.list_versions()
    proxy.set_mode("cut")
    path = await source.fetch(versions[1])
    assert proxy.count("cut") == 3  # every cut happened mid-body, and each was recovered
    _served_right(path, weights)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "weights.bin"]
    assert list((tmp_path / "models").rglob(".tmp-*")) == []
