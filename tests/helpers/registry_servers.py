"""Servers a registry sends clients to, for the registry fixture: a token issuer (the registry
token flow, as Docker Hub's auth.docker.io) and a blob host (the CDN or object store a
registry redirects blob downloads to). Both speak HTTPS on 127.0.0.1.

The token issuer checks basic credentials and signs JWTs (RS256, with the signing
certificate in ``x5c``) that the real registry verifies against ``rootcertbundle``: the tokens
are real, only the issuer is small.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.helpers.tls import Tls, self_signed

SERVICE = "modelfleet-test-registry"
ISSUER = "modelfleet-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenIssuer:
    """Who may get tokens, and a record of what was asked for."""

    username: str
    password: str
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    requests: list[dict[str, Any]] = field(default_factory=list)

    def sign(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
            "iat": now, "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def check(self, authorization: str) -> str | None:
        """The user a Basic header authenticates, else None."""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        ok = secrets.compare_digest(f"{user}:{password}", f"{self.username}:{self.password}")
        return user if ok else None


class _TokenHandler(BaseHTTPRequestHandler):
    issuer: TokenIssuer

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        user = self.issuer.check(self.headers.get("Authorization", ""))
        self.issuer.requests.append({"query": query, "user": user})
        if user is None or query.get("service") != [SERVICE]:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        token = self.issuer.sign(user, query.get("scope", []))
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _serve(server: ThreadingHTTPServer, tls: Tls) -> Iterator[str]:
    server.socket = tls.server_context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def token_issuer(
    folder: Path, tls: Tls, username: str, password: str
) -> Iterator[tuple[TokenIssuer, dict[str, str]]]:
    """Run a token issuer; yields it and the registry's ``auth.token`` settings."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    cert = self_signed(
        key, ISSUER, now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    )
    bundle = folder / "token-signer.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issuer = TokenIssuer(username, password, key, cert)
    handler = type("Handler", (_TokenHandler,), {"issuer": issuer})
    with _serve(ThreadingHTTPServer(("127.0.0.1", 0), handler), tls) as url:
        settings = {
            "realm": f"{url}/token",
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(bundle),
        }
        yield issuer, settings


@dataclass
class BlobHost:
    url: str
    requests: list[str] = field(default_factory=list)
    """``METHOD path`` of every request served."""
    authorizations: list[str] = field(default_factory=list)
    """Every Authorization header received (a registry's redirect must not carry one)."""


class _BlobHandler(SimpleHTTPRequestHandler):
    host: BlobHost

    def send_head(self) -> Any:
        self.host.requests.append(f"{self.command} {self.path}")
        if "Authorization" in self.headers:
            self.host.authorizations.append(self.headers["Authorization"])
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def blob_host(root: Path, tls: Tls) -> Iterator[BlobHost]:
    """Serve the files under ``root`` over HTTPS (GET and HEAD)."""
    root.mkdir(parents=True, exist_ok=True)
    host = BlobHost("")
    handler = partial(type("Handler", (_BlobHandler,), {"host": host}), directory=str(root))
    with _serve(ThreadingHTTPServer(("127.0.0.1", 0), handler), tls) as url:
        host.url = url
        yield host
