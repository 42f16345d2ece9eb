"""``oci://`` storage URIs: parse and validate them, naming the field and the part to fix.

``oci://HOST[:PORT]/REPO[:TAG]`` or ``oci://HOST[:PORT]/REPO@sha256:HEX`` (tag default
``latest``), the way KServe's modelcar URIs name images. ``checks.check_storage_uri`` calls
:func:`parse_oci_uri` for every ``oci://`` storageUri; ``render.delivery`` turns one into the
``image.reference`` of an image volume. Pure: no kopf, no Kubernetes client, no I/O.

The grammar (host, repository, tag, digest) is ``modelfleet_runtime.schemes``', shared with the
runtime's ``storage/oci.py``; this module adds the operator's checks of the whole URI and its
messages. Hand-written rather than taken from a reference-parsing library: the grammar is the
OCI distribution spec's few regular expressions, and the operator needs messages that name the
field and the part at fault, which a library's generic "invalid reference format" does not
give. The URI is never echoed when it carries credentials (``user:pass@``).
"""

from __future__ import annotations

from modelfleet_runtime.schemes import OCI_FORM, OCI_HOST, OciRef, OciReferenceError, oci_reference

__all__ = ["OciRef", "parse_oci_uri"]

SCHEME = "oci://"


def parse_oci_uri(uri: str, field: str) -> OciRef:
    """Parse ``uri``; raise ``ValueError`` naming ``field`` and the part to fix."""
    if not uri.startswith(SCHEME):
        raise ValueError(f"{field}: {uri!r} is not an oci:// URI; use {OCI_FORM}")
    host, slash, rest = uri.removeprefix(SCHEME).partition("/")
    if "@" in host:  # never echo: the part before '@' is a user name and maybe a password
        raise ValueError(
            f"{field}: an oci:// URI must not carry credentials; put them in a Secret of type "
            "kubernetes.io/dockerconfigjson named in spec.predictor.imagePullSecrets"
        )
    if any(c in uri for c in "?# "):
        raise ValueError(f"{field}: {uri!r} has a query, fragment or space; use {OCI_FORM}")
    match = OCI_HOST.fullmatch(host)
    if not match or not 0 < int(match["port"] or 443) < 65536:
        raise ValueError(f"{field}: {uri!r} names no valid registry host[:port]; use {OCI_FORM}")
    if not slash or not rest:
        raise ValueError(f"{field}: {uri!r} names no repository; use {OCI_FORM}")
    try:
        return oci_reference(host, rest)
    except OciReferenceError as exc:
        raise ValueError(f"{field}: {uri!r} {exc}") from None
