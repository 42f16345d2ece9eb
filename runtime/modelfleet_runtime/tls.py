"""TLS for both ports: the certificate, key and client CA files, loaded at start-up and
re-read when they change on disk, with no restart and no failed request.

``server.serve`` builds one ``TlsFiles`` from the settings (files that cannot be loaded fail
the start, with the reason); ``tls_server`` takes ``TlsFiles.context`` for each new HTTPS
connection; ``grpc_api`` serves ``grpc_credentials(files)``, whose fetcher gRPC calls on each
new connection; ``grpc_h2`` (the opt-in transport) takes ``TlsFiles.h2_context``, the same
certificate with ALPN ``h2``. ``watch()`` runs with the app's services and polls the files once
a second.

A change builds a NEW ``ssl.SSLContext`` (and a new gRPC certificate configuration) that new
connections take; open connections keep the one they were made with, so nothing in flight
notices. Reloading an existing context in place would not be safe: ``load_cert_chain`` sets
the certificate before the key, and a handshake between the two would fail.

A pair is taken only whole. Kubernetes updates a Secret volume by swapping a ``..data``
symlink, but a reader may still see one file of the old pair and one of the new, and a pair
written by hand is half-written for a moment: a key that does not match its certificate (or
a file that does not parse) is not taken, the previous pair keeps serving, the reason is
logged once, and the next poll tries again. The bytes are read before and after OpenSSL
loads the files; the pair is taken only if both reads agree, so the context and the gRPC
configuration (built from the bytes) hold the same certificate.

Hand-written polling rather than a watcher library (``watchfiles`` is installed): three
``stat`` calls a second cost nothing, and polling sees every kind of change on every file
system (a symlink swap, an in-place write, NFS), as ``auth.TokenSource`` does for tokens.

The context: TLS 1.2 or newer, Python's server defaults (no compression, server cipher
order, ECDHE), no renegotiation, ALPN ``http/1.1`` (``h2`` for gRPC on uvicorn's HTTP/2: gRPC
clients refuse a server that does not select it); with a client CA, a certificate signed by
it is required, and no other CA (the system's are not loaded) can vouch for a client.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from modelfleet_runtime.config import Settings

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
"""Seconds between checks of the files (a Secret rotation is seen within about this)."""


class TlsError(Exception):
    """The TLS files cannot be used; the message says why."""


@dataclass(frozen=True)
class Material:
    """The bytes of one loaded set of files."""

    cert: bytes
    key: bytes
    client_ca: bytes | None

    def der(self) -> bytes:
        """The server's (first) certificate, DER-encoded."""
        text = self.cert.decode("ascii", "replace")
        start = text.find(ssl.PEM_HEADER)
        end = text.find(ssl.PEM_FOOTER, start)
        if start < 0 or end < 0:
            raise TlsError("the certificate file holds no PEM certificate")
        return ssl.PEM_cert_to_DER_cert(text[start : end + len(ssl.PEM_FOOTER)])

    def fingerprint(self) -> str:
        """SHA-256 of the server's (first) certificate, as ``openssl x509 -fingerprint``
        shows it: the log names the certificate in use without showing anything secret."""
        return hashlib.sha256(self.der()).hexdigest()

    def not_after(self) -> float | None:
        """When the server's certificate expires (POSIX seconds); None if it cannot be read."""
        try:
            return not_after(self.der())
        except (TlsError, ValueError, IndexError):
            return None


def not_after(der: bytes) -> float:
    """The notAfter of a DER X.509 certificate (RFC 5280 4.1), as POSIX seconds.

    Hand-written, about twenty lines: Python's ``ssl`` decodes only a peer's certificate, and the
    runtime has no ASN.1 library (``cryptography`` would be a new dependency of the image for
    one field of a certificate OpenSSL has already accepted). Raises ValueError or IndexError
    on anything that is not a certificate."""
    _, start, _ = _element(der, 0)  # Certificate
    _, pos, _ = _element(der, start)  # tbsCertificate
    tag, _, end = _element(der, pos)
    if tag == 0xA0:  # [0] version, absent in v1 certificates
        pos = end
    for _ in range(3):  # serialNumber, signature, issuer
        pos = _element(der, pos)[2]
    tag, start, _ = _element(der, pos)  # validity: notBefore, notAfter
    if tag != 0x30:
        raise ValueError("no validity in the certificate")
    tag, start, end = _element(der, _element(der, start)[2])
    text = der[start:end].decode("ascii")
    if tag == 0x17 and len(text) == 13:  # UTCTime YYMMDDHHMMSSZ: 50-99 are 19YY (5280 4.1.2.5.1)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif not (tag == 0x18 and len(text) == 15):  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError(f"notAfter is not a time: tag {tag:#x}, {text!r}")
    when = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _element(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the contents of the DER element at ``pos``."""
    tag, length, pos = der[pos], der[pos + 1], pos + 2
    if length & 0x80:  # long form: the next (length & 0x7F) bytes hold the length
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("a DER length this long is not a certificate's")
        length, pos = int.from_bytes(der[pos : pos + count], "big"), pos + count
    if pos + length > len(der):
        raise ValueError("the certificate is cut short")
    return tag, pos, pos + length


@dataclass(frozen=True)
class Loaded:
    material: Material
    context: ssl.SSLContext
    h2_context: ssl.SSLContext
    """The same certificate, key and client CA, offering ALPN ``h2`` (gRPC)."""
    not_after: float | None
    """When the certificate expires (POSIX seconds), read once at load; None if unreadable."""


def _read(cert: Path, key: Path, client_ca: Path | None) -> Material:
    return Material(
        cert.read_bytes(), key.read_bytes(), None if client_ca is None else client_ca.read_bytes()
    )


def _encrypted_key() -> bytes:
    raise TlsError("the private key is encrypted; give an unencrypted one")


def new_context(alpn: str = "http/1.1") -> ssl.SSLContext:
    """A server context with the defaults above, before any certificate is loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols([alpn])
    return context


def _load(cert: Path, key: Path, client_ca: Path | None) -> Loaded:
    before = _read(cert, key, client_ca)
    context, h2_context = (
        _context(before, cert, key, client_ca, alpn) for alpn in ("http/1.1", "h2")
    )
    if _read(cert, key, client_ca) != before:
        raise TlsError("the files changed while they were loaded")
    before.fingerprint()  # fails on a certificate file that OpenSSL took but is not PEM
    return Loaded(before, context, h2_context, before.not_after())


def _context(
    material: Material, cert: Path, key: Path, client_ca: Path | None, alpn: str
) -> ssl.SSLContext:
    """A context holding the files (the certificate and key as OpenSSL reads them, the client
    CA from ``material``'s bytes)."""
    context = new_context(alpn)
    try:  # a refusing password callback: without one, OpenSSL would prompt on the terminal
        context.load_cert_chain(cert, key, password=_encrypted_key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(f"the private key {key} does not match the certificate {cert}") from None
        raise TlsError(f"{cert} and {key} are not a PEM certificate and its key: {exc}") from None
    if material.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(cadata=material.client_ca.decode("ascii"))
        except (ssl.SSLError, ValueError) as exc:  # ValueError: empty, or not ASCII
            raise TlsError(
                f"the client CA file {client_ca} holds no PEM certificate: {exc}"
            ) from None
    return context


def _reason(exc: OSError | TlsError) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot read {exc.filename}: {exc.strerror}"
    return str(exc)


class TlsFiles:
    """The current certificate, key and client CA; ``refresh`` reloads them on a change."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.paths = (cert, key, client_ca)
        self._identity = self._stat()
        try:
            self.current = _load(*self.paths)
        except (OSError, TlsError) as exc:
            raise TlsError(f"cannot use the TLS files: {_reason(exc)}") from None
        self._failure: str | None = None
        log.info("TLS certificate %s loaded", self.current.material.fingerprint())

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsFiles | None:
        """The files the settings name, loaded; None when TLS is off."""
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        return cls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)

    @property
    def context(self) -> ssl.SSLContext:
        """The context a new HTTPS connection uses."""
        return self.current.context

    @property
    def h2_context(self) -> ssl.SSLContext:
        """The context a new gRPC connection uses on the h2 transport."""
        return self.current.h2_context

    def _stat(self) -> tuple[tuple[int, int, int, int], ...] | None:
        try:
            stats = [os.stat(path) for path in self.paths if path is not None]
        except OSError:
            return None  # a file missing for a moment: load (and fail) on the next poll
        return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def refresh(self) -> bool:
        """Reload the files if they changed since the last load; whether new ones are in use.
        On failure the previous ones stay, and the next call tries again."""
        identity = self._stat()
        if identity is not None and identity == self._identity:
            return False
        try:
            loaded = _load(*self.paths)
        except (OSError, TlsError) as exc:
            reason = _reason(exc)
            if reason != self._failure:  # once per cause: a log line a second helps nobody
                log.warning("TLS files not reloaded, the previous ones stay in use: %s", reason)
                self._failure = reason
            return False
        self._failure, self._identity = None, identity
        if loaded.material == self.current.material:
            return False  # touched, or swapped for the same bytes
        self.current = loaded  # one assignment: a reader sees the old pair or the new
        log.info("TLS certificate %s loaded (rotated)", loaded.material.fingerprint())
        return True

    async def watch(self, interval: float = POLL_INTERVAL) -> None:
        """Check the files every ``interval`` s until cancelled (off the event loop: the
        reads and OpenSSL's parsing are blocking calls)."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.refresh)


def _grpc_configuration(material: Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key, material.cert)], root_certificates=material.client_ca
    )


def grpc_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that follow ``files``: gRPC asks the fetcher for a new configuration
    at each new connection (from its own threads), which answers None while unchanged."""
    lock = threading.Lock()
    first = files.current.material
    sent = [first]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        material = files.current.material
        with lock:
            if material is sent[0]:
                return None
            sent[0] = material
        return _grpc_configuration(material)

    return grpc.dynamic_ssl_server_credentials(
        _grpc_configuration(first),
        fetch,  # type: ignore[arg-type]  # the stubs forget that None means "unchanged"
        require_client_authentication=first.client_ca is not None,
    )
