"""Endpoint authentication: static bearer tokens, checked by a pure ASGI middleware before a
route runs, so a request without a valid token is refused (401) before its body is read or a
model is touched.

``app.create_app`` installs ``BearerAuth`` when ``Settings.auth_tokens_file`` or
``Settings.auth_token`` is set; with neither, nothing is installed and every endpoint is open.

Tokens come from a file of one token per line (a mounted Kubernetes Secret) and/or one token in
the settings. The file is re-read whenever its identity (device, inode, size, mtime) changes:
Kubernetes updates a Secret volume by swapping a ``..data`` symlink, so ``os.stat`` through the
path sees a new inode and tokens rotate without a restart. If the file cannot be read the last
tokens read stay in force; if it was never readable no file token is accepted (fail closed).

Exempt, because they carry no model data and their callers hold no token: the health probes
(``/v2/health/live``, ``/v2/health/ready``: kubelet), ``/metrics`` (Prometheus scrapes; restrict
it with a NetworkPolicy if needed) and the static API docs (``/docs``, ``/openapi.json``).

Token values are never logged, echoed or put in metrics; comparison is constant-time over
SHA-256 digests, so neither content nor length of an accepted token leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from modelfleet_runtime import codec
from modelfleet_runtime.config import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EXEMPT_PATHS = frozenset(
    {"/v2/health/live", "/v2/health/ready", "/metrics", "/docs", "/openapi.json"}
)
EXEMPT_PREFIXES = ("/docs/",)
REALM = 'Bearer realm="modelfleet"'


def _digest(token: str | bytes) -> bytes:
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).digest()


class TokenSource:
    """The accepted tokens (as SHA-256 digests): the static one plus the file's current lines."""

    def __init__(self, path: Path | None, token: str | None) -> None:
        self.path = path
        self._static = [_digest(token)] if token else []
        self._from_file: list[bytes] = []
        self._identity: tuple[int, int, int, int] | None = None
        self._warned = False

    def _refresh(self) -> None:
        """Re-read the file if it changed since the last read (cheap: one ``stat``)."""
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if identity == self._identity:
                return
            lines = self.path.read_bytes().splitlines()
        except OSError as exc:
            if not self._warned:  # once per outage: a probe-rate log line helps nobody
                log.warning("cannot read auth tokens file %s: %s", self.path, exc.strerror)
                self._warned = True
            return
        self._warned = False
        self._from_file = [_digest(line.strip()) for line in lines if line.strip()]
        self._identity = identity
        log.info("auth tokens file read: %d token(s)", len(self._from_file))

    def accepts(self, presented: bytes) -> bool:
        """Whether ``presented`` is one of the tokens, comparing every one in constant time."""
        self._refresh()
        wanted = _digest(presented)
        matched = False
        for known in (*self._static, *self._from_file):
            matched |= hmac.compare_digest(known, wanted)
        return matched


def token_source(settings: Settings) -> TokenSource | None:
    """The token source ``settings`` ask for, or None when authentication is off."""
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    if settings.auth_tokens_file is None and not token:
        return None
    source = TokenSource(settings.auth_tokens_file, token)
    source.accepts(b"")  # read the file now, so a missing one is reported at start-up
    return source


def parse_bearer(value: bytes) -> bytes | None:
    """The token of an ``Authorization`` value ``Bearer <token>``, else None."""
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() == b"bearer" and token.strip():
        return token.strip()
    return None


def bearer_token(scope: Scope) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return parse_bearer(bytes(value))
    return None


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


class BearerAuth:
    """ASGI middleware: 401 ``{"error": ...}`` with ``WWW-Authenticate`` unless the request
    carries an accepted bearer token. It never calls ``receive``, so a refused body is never
    read."""

    def __init__(self, app: ASGIApp, tokens: TokenSource) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_exempt(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is not None and self.tokens.accepts(token):
            await self.app(scope, receive, send)
            return
        if token is None:
            reason, challenge = "missing bearer token", REALM
        else:
            reason, challenge = "invalid bearer token", f'{REALM}, error="invalid_token"'
        log.info("rejected request: %s (%s %s)", reason, scope.get("method"), scope.get("path"))
        await _refuse(send, reason, challenge)


async def _refuse(send: Send, reason: str, challenge: str) -> None:
    body = codec.error_body(f"unauthorized: {reason}")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode()),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
