"""``oci://`` storage URIs: parse and validate them, and name the image they point at.

``oci://HOST[:PORT]/REPO[:TAG]`` or ``oci://HOST[:PORT]/REPO@sha256:HEX`` (tag default
``latest``), the way KServe's modelcar URIs name images. ``checks.check_storage_uri`` calls
:func:`parse_oci_uri` for every ``oci://`` storageUri; ``render.delivery`` turns one into the
``image.reference`` of an image volume. Pure: no kopf, no Kubernetes client, no I/O.

Hand-written rather than taken from a reference-parsing library: the grammar is the OCI
distribution spec's few regular expressions (repository components, tag, digest), and the
operator needs messages that name the field and the part at fault, which a library's generic
"invalid reference format" does not give. The runtime's ``storage/oci.py`` checks the same
grammar, but the operator image does not hold the runtime's storage dependencies (urllib3,
boto3), so it cannot import that module. The URI is never echoed when it carries credentials
(``user:pass@``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "oci://"
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_FORM = "oci://HOST[:PORT]/REPO[:TAG] or oci://HOST[:PORT]/REPO@sha256:<64 hex>"
_TAG_RULE = "a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
_REPOSITORY_RULE = (
    "a repository is lowercase letters, digits and separators ('.', '_', '__', '-') in "
    "'/'-separated components"
)


@dataclass(frozen=True)
class OciRef:
    """A parsed ``oci://`` URI: registry host (with port), repository, and tag or digest."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def hostname(self) -> str:
        """The host without its port (and without an IPv6 literal's brackets)."""
        if self.host.startswith("["):
            return self.host[1 : self.host.index("]")]
        return self.host.rsplit(":", 1)[0] if ":" in self.host else self.host

    @property
    def image(self) -> str:
        """The image reference a container runtime pulls: ``host/repo@digest``, else
        ``host/repo:tag`` (``latest`` when the URI names none)."""
        if self.digest is not None:
            return f"{self.host}/{self.repository}@{self.digest}"
        return f"{self.host}/{self.repository}:{self.tag or 'latest'}"


def parse_oci_uri(uri: str, field: str) -> OciRef:
    """Parse ``uri``; raise ``ValueError`` naming ``field`` and the part to fix."""
    if not uri.startswith(SCHEME):
        raise ValueError(f"{field}: {uri!r} is not an oci:// URI; use {_FORM}")
    host, slash, rest = uri.removeprefix(SCHEME).partition("/")
    if "@" in host:  # never echo: the part before '@' is a user name and maybe a password
        raise ValueError(
            f"{field}: an oci:// URI must not carry credentials; put them in a Secret of type "
            "kubernetes.io/dockerconfigjson named in spec.predictor.imagePullSecrets"
        )
    if any(c in uri for c in "?# "):
        raise ValueError(f"{field}: {uri!r} has a query, fragment or space; use {_FORM}")
    match = _HOST.fullmatch(host)
    if not match or not 0 < int(match["port"] or 443) < 65536:
        raise ValueError(f"{field}: {uri!r} names no valid registry host[:port]; use {_FORM}")
    if not slash or not rest:
        raise ValueError(f"{field}: {uri!r} names no repository; use {_FORM}")
    return _reference(uri, field, host, rest)


def _reference(uri: str, field: str, host: str, rest: str) -> OciRef:
    tag: str | None = None
    digest: str | None = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if ":" in rest:
            raise ValueError(f"{field}: {uri!r} names both a tag and a digest; keep one")
    elif ":" in rest:
        rest, tag = rest.rsplit(":", 1)
    for part, value, pattern, rule in (
        ("digest", digest, _DIGEST, "a digest is sha256: and 64 lowercase hex digits"),
        ("tag", tag, _TAG, _TAG_RULE),
        ("repository", rest, _REPOSITORY, _REPOSITORY_RULE),
    ):
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"{field}: {uri!r} has {part} {value!r}; {rule}")
    return OciRef(host=host, repository=rest, tag=tag, digest=digest)
