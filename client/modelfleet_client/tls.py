"""What a client's TLS uses, for https:// (an ``ssl.SSLContext``) and grpcs:// (the PEM bytes
``grpc.ssl_channel_credentials`` takes): the CAs to trust, and the client's own certificate for
a server that asks for one (mutual TLS, ``clientAuth: Require`` on a ModelFleet endpoint).

``cert`` is given as requests and httpx take it: one PEM file holding the certificate (and its
chain) and the private key, or a pair (certificate file, key file).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

PathLike = str | os.PathLike[str]
Cert = PathLike | tuple[PathLike, PathLike]
"""A client certificate: a PEM file with the certificate and its key, or (cert file, key file)."""


@dataclass(frozen=True)
class TlsFiles:
    ca_file: str | None = None
    """A PEM bundle to trust; None: the system's CAs."""
    cert: Cert | None = None
    """The client's certificate and key, shown to a server that asks for one."""

    @property
    def cert_files(self) -> tuple[str, str] | None:
        """(certificate file, key file); the same file twice when one holds both."""
        if self.cert is None:
            return None
        if isinstance(self.cert, tuple):
            return os.fspath(self.cert[0]), os.fspath(self.cert[1])
        return os.fspath(self.cert), os.fspath(self.cert)

    def context(self) -> ssl.SSLContext:
        """The context of an https:// client. Raises OSError or ssl.SSLError at once for
        files that cannot be read or do not match, before any connection."""
        context = ssl.create_default_context(cafile=self.ca_file)
        self._load_cert(context)
        return context

    def _load_cert(self, context: ssl.SSLContext) -> None:
        if self.cert_files is not None:
            # A refusing password callback: without one, OpenSSL would prompt on the terminal.
            context.load_cert_chain(*self.cert_files, password=_encrypted_key)

    def pem(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(root certificates, private key, certificate chain) for gRPC; None where not given.
        One file holding both the certificate and the key serves as both (gRPC reads the
        blocks of the kind it wants). The pair is checked here as for https:// (gRPC itself
        would only fail the first call)."""
        roots = Path(self.ca_file).read_bytes() if self.ca_file else None
        if self.cert_files is None:
            return roots, None, None
        self._load_cert(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # no system CAs to read for it
        cert, key = self.cert_files
        return roots, Path(key).read_bytes(), Path(cert).read_bytes()


def _encrypted_key() -> bytes:
    raise ValueError("the client key is encrypted; give an unencrypted one")
