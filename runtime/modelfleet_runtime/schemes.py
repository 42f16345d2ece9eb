"""Model URI schemes, known in one place, and what a model URI says without any I/O.

``SCHEMES`` holds one row of traits per scheme: what the part after ``://`` names (a bucket, a
volume claim, a host), how credentials reach a pod, what the operator mounts, whether the
runtime fetches it itself, allows it by default, and whether a storageUri may use it. The
runtime reads it in ``storage/`` (parsing, the plain-http rule; ``storage/__init__.py`` has one
store module per fetched scheme, and a test holds the two in agreement) and ``config.py`` (the
default ``allowed_schemes``, the model's default name); the operator reads it in ``checks.py``
(the schemes a storageUri may use) and ``render/`` (volumes, credentials, delivery). Adding a
scheme is one row here plus its store module.

Also here, once for both sides: the grammar of ``oci://`` references (the OCI distribution
spec's repository, tag and digest expressions), checked by the operator's ``oci_ref.py`` and
the runtime's ``storage/oci.py``; and the name a URI gives a model.

Standard library only: the operator's image installs this package without the runtime's
storage and inference dependencies (boto3, urllib3, ONNX Runtime, numpy), and ``config.py``
imports this module, which the ``storage`` package (that imports ``config``) could not be.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Netloc = Literal["bucket", "claim", "host", "none"]
Credentials = Literal["none", "aws-env", "key-file", "pull-secret"]
Mount = Literal["none", "claim", "image"]


@dataclass(frozen=True)
class Scheme:
    """The traits of one URI scheme."""

    name: str
    netloc: Netloc
    """What follows ``://``: a bucket (the path is a key prefix), a PersistentVolumeClaim, a
    host (``host[:port]``), or nothing (a local path)."""
    credentials: Credentials
    """How a pod gets credentials from ``spec.modelfleet.storage.secretRef`` or the
    predictor: ``aws-env``, the Secret's keys as AWS_* variables; ``key-file``, the Secret's
    key file mounted (the runtime's ``gcs_credentials_file``); ``pull-secret``, the first image
    pull secret's Docker config mounted (``registry_config``, when the runtime pulls)."""
    mount: Mount
    """What the operator mounts for the model: the claim (read-only, fetched as ``file://``),
    or the image (an image volume, when delivered as one)."""
    fetched: bool
    """The runtime has a store module for it (``storage/__init__.py``'s ``STORES``)."""
    default_allowed: bool
    """In the runtime's default ``allowed_schemes``."""
    in_spec: bool
    """An InferenceService's storageUri may use it."""
    loopback_only: bool = False
    """The runtime reaches only loopback addresses with it (no integrity, no privacy)."""

    @property
    def names_image(self) -> bool:
        """The URI names an OCI image (``host/repo[:tag|@digest]``), served as version 1."""
        return self.mount == "image"


SCHEMES: Mapping[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("s3", "bucket", "aws-env", "none", True, True, True),
        Scheme("gs", "bucket", "key-file", "none", True, True, True),
        Scheme("https", "host", "none", "none", True, True, True),
        # For tests and sidecars on the pod's loopback only; never from a storageUri.
        Scheme("http", "host", "none", "none", True, False, False, loopback_only=True),
        Scheme("oci", "host", "pull-secret", "image", True, True, True),
        Scheme("file", "none", "none", "none", True, True, True),
        # The operator mounts the claim and hands the runtime a file:// path.
        Scheme("pvc", "claim", "none", "claim", False, False, True),
    )
}
"""Every scheme, in the order messages and the default allow-list list them."""


UNKNOWN = Scheme("", "none", "none", "none", False, False, False)
"""The row of an unknown scheme, or of none: every trait off."""


def scheme_of(uri: str) -> Scheme:
    """The row of ``uri``'s scheme (any case, as ``urlsplit`` reads it); ``UNKNOWN`` for an
    unknown scheme, none (a plain path), or a URI ``urlsplit`` refuses."""
    try:
        return SCHEMES.get(urlsplit(uri).scheme, UNKNOWN)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return UNKNOWN


def default_allowed_schemes() -> list[str]:
    """The runtime's default ``allowed_schemes``."""
    return [s.name for s in SCHEMES.values() if s.default_allowed]


def spec_schemes() -> list[str]:
    """The schemes an InferenceService's storageUri may use."""
    return [s.name for s in SCHEMES.values() if s.in_spec]


# --- The name a URI gives a model ------------------------------------------------------------

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
"""Archives the runtime unpacks as version 1 (``storage/archive.py``)."""


def file_stem(name: str) -> str | None:
    """``name`` without its ``.onnx`` or archive suffix when it names one model file (``m.onnx``,
    ``m.tar.gz``), else None (a repository folder)."""
    if name.endswith(".onnx"):
        return name.removesuffix(".onnx")
    lower = name.lower()
    suffix = next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)
    return name[: -len(suffix)] if suffix else None


def model_name(uri: str) -> str:
    """The name a model is served under by default: the URI's last segment without its
    ``.onnx`` or archive suffix (an image: its repository's last part, no tag or digest)."""
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    if scheme_of(uri).names_image:
        last = last.split("@", 1)[0].split(":", 1)[0]
    stem = file_stem(last)
    return (last if stem is None else stem) or "model"


# --- oci:// references ---------------------------------------------------------------------

OCI_FORM = "oci://HOST[:PORT]/REPO[:TAG] or oci://HOST[:PORT]/REPO@sha256:<64 hex digits>"
OCI_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
"""A registry ``host[:port]`` (a DNS name, an IPv4 address or a bracketed IPv6 literal)."""
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_RULES = (
    (
        "digest",
        re.compile(r"sha256:[a-f0-9]{64}"),
        "a digest is sha256: and 64 lowercase hex digits",
    ),
    (
        "tag",
        re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
        "a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
    ),
    (
        "repository",
        re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*"),
        "a repository is lowercase letters, digits and separators ('.', '_', '__', '-') in "
        "'/'-separated components",
    ),
)


class OciReferenceError(ValueError):
    """A reference that breaks the grammar; the message (``has tag '-v1'; a tag is ...``)
    follows the URI in both sides' messages."""


@dataclass(frozen=True)
class OciRef:
    """A parsed ``oci://`` URI: registry ``host[:port]``, repository, and tag or digest."""

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

    @property
    def uri(self) -> str:
        """The URI again, with its tag spelled out (``latest`` when it names none)."""
        return f"oci://{self.image}"


def oci_reference(host: str, rest: str) -> OciRef:
    """Check ``rest`` (what follows ``host/``: ``REPO[:TAG]`` or ``REPO@DIGEST``) against the
    distribution spec's grammar; raise ``OciReferenceError`` naming the part at fault."""
    if not rest:
        raise OciReferenceError("names no repository")
    tag: str | None = None
    digest: str | None = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if ":" in rest:
            raise OciReferenceError("names both a tag and a digest; keep one")
    elif ":" in rest:
        rest, tag = rest.rsplit(":", 1)
    for (part, pattern, rule), value in zip(_RULES, (digest, tag, rest), strict=True):
        if value is not None and not pattern.fullmatch(value):
            raise OciReferenceError(f"has {part} {value!r}; {rule}")
    return OciRef(host=host, repository=rest, tag=tag, digest=digest)
