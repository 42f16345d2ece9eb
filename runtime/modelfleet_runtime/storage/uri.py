"""Model URIs: parse them, redact them for messages, and check them against the allow-lists.

``open_source`` (``storage/__init__.py``) calls ``parse_uri`` and ``check_scheme`` before it
builds a store, and ``check_hosts`` after building it but before the first call, so a refused
URI never opens a connection (RELIABILITY S12: no SSRF through the model URI).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ..schemes import SCHEMES, file_stem
from .base import InvalidUriError, NotAllowedError


@dataclass(frozen=True)
class ParsedUri:
    """A model URI taken apart. ``path`` has no leading slash for buckets (it is the key
    prefix) and is absolute for files; ``query`` is kept only to send (presigned URLs)."""

    scheme: str
    host: str
    port: int | None
    path: str
    query: str

    @property
    def netloc(self) -> str:
        """``host`` or ``host:port``, without any user info."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def redacted(self) -> str:
        """The URI for messages and logs: no user info, no query (it may hold a signature)."""
        if self.scheme == "file":
            return f"file://{self.path}"
        sep = "" if self.scheme in ("http", "https") else "/"
        body = self.path if sep == "" else self.path.lstrip("/")
        return f"{self.scheme}://{self.netloc}{sep if body else ''}{body}"


def parse_uri(uri: str) -> ParsedUri:
    """Split ``uri``; a plain path (how a mounted PVC arrives) is a ``file`` URI."""
    if not uri.strip():
        raise InvalidUriError("the model URI is empty")
    if "://" not in uri:
        return ParsedUri("file", "", None, uri, "")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise InvalidUriError(f"{scheme}:// URI has an invalid port") from None
    if "@" in parts.netloc:
        raise InvalidUriError(f"{scheme}:// URI must not hold credentials; use settings")
    host = (parts.hostname or "").lower()
    if scheme == "file":
        if host not in ("", "localhost"):
            raise InvalidUriError(f"file:// URIs name a local path, not host {host!r}")
        return ParsedUri("file", "", None, unquote(parts.path), "")
    if not host:
        raise InvalidUriError(f"{scheme}:// URI names no bucket or host")
    known = SCHEMES.get(scheme)
    if known is not None and known.netloc == "bucket":
        return ParsedUri(scheme, parts.netloc, None, unquote(parts.path).lstrip("/"), "")
    return ParsedUri(scheme, host, port, parts.path or "/", parts.query)


def check_scheme(parsed: ParsedUri, allowed_schemes: Iterable[str]) -> None:
    """Refuse schemes not in ``allowed_schemes``, and plain http to anything but loopback
    (http carries no integrity; it exists for tests and sidecars on the pod's loopback)."""
    allowed = {s.lower() for s in allowed_schemes}
    if parsed.scheme not in allowed:
        raise NotAllowedError(
            f"{parsed.redacted}: scheme {parsed.scheme!r} is not allowed "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'})"
        )
    known = SCHEMES.get(parsed.scheme)
    if known is not None and known.loopback_only and not is_loopback(parsed.host):
        raise NotAllowedError(
            f"{parsed.redacted}: plain {parsed.scheme} is only allowed to a loopback address; "
            "use https"
        )


def check_hosts(location: str, hosts: Iterable[str], allowed_hosts: Iterable[str]) -> None:
    """Refuse a store whose endpoints are not all in ``allowed_hosts`` (when that is set).

    An entry matches a host exactly, a ``host:port`` exactly, or, as ``*.example.com``, any
    subdomain of ``example.com``.
    """
    allowed = [h.lower() for h in allowed_hosts]
    if not allowed:
        return
    for netloc in hosts:
        if not _host_allowed(netloc.lower(), allowed):
            raise NotAllowedError(
                f"{location}: host {netloc} is not in allowed_hosts ({', '.join(allowed)})"
            )


def _host_allowed(netloc: str, allowed: list[str]) -> bool:
    host = netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc
    for entry in allowed:
        if entry in (netloc, host):
            return True
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
    return False


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and literal loopback addresses (no DNS lookup)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def netloc_of(url: str) -> str:
    """``host`` or ``host:port`` of an endpoint URL, lower case, without user info."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return host if parts.port is None else f"{host}:{parts.port}"


def split_single(path: str) -> tuple[str, str | None]:
    """``(root, key)`` for a bucket path: ``a/b/m.onnx`` (or an archive, ``a/b/m.tar.gz``)
    names one file (root ``a/b``, key ``m.onnx``); anything else is a repository folder (root
    ``path``, no key)."""
    path = path.strip("/")
    if file_stem(path) is None:
        return path, None
    root, _, name = path.rpartition("/")
    return root, name
