"""Throwaway TLS material for servers on loopback: private CAs, the server certificates they
sign for 127.0.0.1 and localhost and the client certificates they sign (mutual TLS), written
as PEM files; and ``publish``, which updates a folder the way the kubelet updates a mounted
Secret (the registry fixture, its token and blob servers, and the runtime's TLS tests use it).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Tls:
    ca: Path
    """The CA's certificate: the bundle a client must trust."""
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting ``cert``."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path
    serial: int


def self_signed(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    """A bare self-signed certificate (no extensions) of ``key``, valid between the two."""
    name = _name(common_name)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int = 1
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .serial_number(x509.random_serial_number())
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


class Ca:
    """A private CA, valid for a day: ``cert`` is the bundle to trust; ``issue`` signs."""

    def __init__(self, folder: Path, common_name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self._key = folder, ec.generate_private_key(ec.SECP256R1())
        self.name = _name(common_name)
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
        self.certificate = (
            _builder(self.name, self.name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert = folder / "ca.pem"
        self.cert.write_bytes(self.certificate.public_bytes(PEM))

    def issue(self, stem: str, *, client: bool = False, days: int = 1) -> Issued:
        """A server certificate for 127.0.0.1 and localhost, or (``client``) a client
        certificate named ``stem``, written to ``stem``.pem and ``stem``.key, valid for
        ``days`` (the CA stays valid for one: longer leaves verify while it does)."""
        key = ec.generate_private_key(ec.SECP256R1())
        purpose = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            _builder(_name(stem if client else "127.0.0.1"), self.name, key.public_key(), days)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if not client:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        issued = Issued(
            self.folder / f"{stem}.pem", self.folder / f"{stem}.key", cert.serial_number
        )
        issued.cert.write_bytes(cert.public_bytes(PEM))
        issued.key.write_bytes(
            key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return issued


def make_tls(folder: Path, common_name: str = "modelfleet test CA") -> Tls:
    """A fresh CA and a server certificate for 127.0.0.1 and localhost, valid for a day."""
    ca = Ca(folder, common_name)
    server = ca.issue("server")
    return Tls(ca.cert, server.cert, server.key)


def publish(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into ``folder`` as the kubelet updates a Secret volume:
    into a new hidden folder, then one atomic rename of the ``..data`` symlink onto it, each
    name being a symlink through ``..data``; a reader sees the old set or the new, never a mix
    of one file's old and another's new version (unless it reads twice)."""
    folder.mkdir(parents=True, exist_ok=True)
    version = folder / f"..{time.time_ns()}"
    version.mkdir()
    for name, data in files.items():
        (version / name).write_bytes(data)
    link = folder / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(version.name)
    old = os.readlink(folder / "..data") if (folder / "..data").is_symlink() else None
    os.replace(link, folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")
    if old is not None:  # the kubelet removes the previous version once it is swapped out
        for stale in (folder / old).iterdir():
            stale.unlink()
        (folder / old).rmdir()
