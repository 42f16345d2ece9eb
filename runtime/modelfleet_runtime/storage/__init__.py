"""Object storage: one module per URI scheme behind the ModelSource seam (see base.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from ..metrics import Metrics
from ..schemes import SCHEMES
from . import gcs, https, local, oci, s3
from .base import (
    AccessDeniedError,
    IntegrityError,
    InvalidUriError,
    ModelSource,
    NotAllowedError,
    NotFoundError,
    ObjectStore,
    RemoteFile,
    RemoteVersion,
    StorageError,
    UnavailableError,
    UnsafePathError,
    WritableStore,
)
from .layout import StoreSource
from .uri import ParsedUri, check_hosts, check_scheme, parse_uri, split_single

__all__ = [
    "AccessDeniedError",
    "IntegrityError",
    "InvalidUriError",
    "ModelSource",
    "NotAllowedError",
    "NotFoundError",
    "RemoteFile",
    "RemoteVersion",
    "StorageError",
    "UnavailableError",
    "UnsafePathError",
    "WritableStore",
    "open_source",
    "open_writable",
]

log = logging.getLogger(__name__)

StoreOpener = Callable[[ParsedUri, Settings], tuple[ObjectStore, str | None]]
"""Builds a scheme's store for a URI, without any network call, and says which key the URI
names when it names one file (None for a repository folder)."""

STORES: dict[str, StoreOpener] = {  # every fetched scheme of schemes.SCHEMES (a test checks)
    "s3": s3.open_store,
    "gs": gcs.open_store,
    "https": https.open_store,
    "http": https.open_store,  # loopback only; see uri.check_scheme
    "oci": oci.open_store,  # https only; see oci.py
    "file": local.open_store,
}


def open_source(settings: Settings, metrics: Metrics | None = None) -> ModelSource:
    """The ``ModelSource`` for ``settings.model_uri`` (``metrics``: where the model cache
    counts its lookups).

    Raises InvalidUriError for a malformed URI and NotAllowedError for a scheme or host the
    allow-lists refuse; both before any connection is made.
    """
    parsed = parse_uri(settings.model_uri)
    check_scheme(parsed, settings.allowed_schemes)
    opener = STORES.get(parsed.scheme)
    if opener is None:
        fetched = sorted(s.name for s in SCHEMES.values() if s.fetched)
        raise InvalidUriError(
            f"{parsed.redacted}: no store for scheme {parsed.scheme!r} "
            f"(known: {', '.join(fetched)})"
        )
    store, single_key = opener(parsed, settings)
    check_hosts(store.location, store.hosts, settings.allowed_hosts)
    log.info("model storage: %s", parsed.redacted)
    return StoreSource(parsed.redacted, store, settings, single_key=single_key, metrics=metrics)


WRITERS: dict[str, Callable[[ParsedUri, Settings], WritableStore]] = {
    "s3": lambda parsed, settings: s3.open_store(parsed, settings)[0],
    "gs": lambda parsed, settings: gcs.GcsStore(
        parsed.host, parsed.path, settings, scope=gcs.WRITE_SCOPE
    ),
    "file": lambda parsed, settings: local.open_store(parsed, settings)[0],
}
"""The schemes ``modelfleet models push`` writes to (oci:// has its own protocol)."""


def open_writable(uri: str, settings: Settings) -> WritableStore:
    """The store of the repository folder ``uri``, for pushing versions into it."""
    parsed = parse_uri(uri)
    check_scheme(parsed, settings.allowed_schemes)
    opener = WRITERS.get(parsed.scheme)
    if opener is None:
        raise InvalidUriError(
            f"{parsed.redacted}: cannot push to {parsed.scheme}:// (pushable: "
            f"{', '.join(sorted(WRITERS))}, oci)"
        )
    if split_single(parsed.path)[1] is not None or Path(parsed.path).is_file():
        raise InvalidUriError(
            f"{parsed.redacted}: names a file; push to the model's repository folder "
            "(versions go in numbered folders under it)"
        )
    store = opener(parsed, settings)
    check_hosts(store.location, store.hosts, settings.allowed_hosts)
    return store
