"""Object storage: one module per URI scheme behind the ModelSource seam (see base.py)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from ..config import Settings
from ..metrics import Metrics
from ..schemes import SCHEMES
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

STORES: dict[str, str] = {  # every fetched scheme of schemes.SCHEMES (a test checks)
    "s3": "s3",
    "gs": "gcs",
    "https": "https",
    "http": "https",  # loopback only; see uri.check_scheme
    "oci": "oci",  # https only; see oci.py
    "file": "local",
}
"""Each scheme's module in this package: its ``open_store`` is a ``StoreOpener``, and a scheme
of ``WRITERS`` has ``open_writable`` too. A module is imported when its scheme is first
opened, so a server imports its own scheme's client only (botocore for s3://, urllib3 for
gs:// and oci://): a start from s3:// skips the other clients' imports."""

WRITERS = frozenset({"s3", "gs", "file"})
"""The schemes ``modelfleet models push`` writes to (oci:// has its own protocol)."""


def _module(scheme: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{STORES[scheme]}")


def open_source(settings: Settings, metrics: Metrics | None = None) -> ModelSource:
    """The ``ModelSource`` for ``settings.model_uri`` (``metrics``: where the model cache
    counts its lookups).

    Raises InvalidUriError for a malformed URI and NotAllowedError for a scheme or host the
    allow-lists refuse; both before any connection is made.
    """
    parsed = parse_uri(settings.model_uri)
    check_scheme(parsed, settings.allowed_schemes)
    if parsed.scheme not in STORES:
        fetched = sorted(s.name for s in SCHEMES.values() if s.fetched)
        raise InvalidUriError(
            f"{parsed.redacted}: no store for scheme {parsed.scheme!r} "
            f"(known: {', '.join(fetched)})"
        )
    opener: StoreOpener = _module(parsed.scheme).open_store
    store, single_key = opener(parsed, settings)
    check_hosts(store.location, store.hosts, settings.allowed_hosts)
    log.info("model storage: %s", parsed.redacted)
    return StoreSource(parsed.redacted, store, settings, single_key=single_key, metrics=metrics)


def open_writable(uri: str, settings: Settings) -> WritableStore:
    """The store of the repository folder ``uri``, for pushing versions into it."""
    parsed = parse_uri(uri)
    check_scheme(parsed, settings.allowed_schemes)
    if parsed.scheme not in WRITERS:
        raise InvalidUriError(
            f"{parsed.redacted}: cannot push to {parsed.scheme}:// (pushable: "
            f"{', '.join(sorted(WRITERS))}, oci)"
        )
    if split_single(parsed.path)[1] is not None or Path(parsed.path).is_file():
        raise InvalidUriError(
            f"{parsed.redacted}: names a file; push to the model's repository folder "
            "(versions go in numbered folders under it)"
        )
    opener: Callable[[ParsedUri, Settings], WritableStore] = _module(parsed.scheme).open_writable
    store = opener(parsed, settings)
    check_hosts(store.location, store.hosts, settings.allowed_hosts)
    return store
