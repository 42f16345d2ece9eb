"""The seam between the model repository and object storage.

``models/repository.py`` calls ``open_source(settings)`` (in ``storage/__init__.py``) and then
only the methods of ``ModelSource``: list what versions storage holds, fetch one into the local
model folder (or the model cache), and release it. One module per URI scheme implements the
byte-moving part (``ObjectStore``); the version layout, path containment, digests and atomic
promotion are shared and live in ``storage/layout.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..startup import StartPhases


class StorageError(Exception):
    """A model could not be listed or fetched. ``reason`` is a CamelCase word for status
    conditions and metrics (NotFound, AccessDenied, Unavailable, IntegrityError, UnsafePath,
    NotAllowed, InvalidUri); the message says what to fix and never holds a credential."""

    reason = "StorageError"
    retryable = False

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class NotFoundError(StorageError):
    reason = "NotFound"


class AccessDeniedError(StorageError):
    reason = "AccessDenied"


class UnavailableError(StorageError):
    """Network failure, timeout, 5xx or throttling: worth another try."""

    reason = "Unavailable"
    retryable = True


class IntegrityError(StorageError):
    reason = "IntegrityError"


class UnsafePathError(StorageError):
    reason = "UnsafePath"


class NotAllowedError(StorageError):
    reason = "NotAllowed"


class InvalidUriError(StorageError):
    reason = "InvalidUri"


@dataclass(frozen=True)
class RemoteFile:
    """One object of a version, ``path`` relative to the version folder (posix)."""

    path: str
    size: int
    etag: str


@dataclass(frozen=True)
class RemoteVersion:
    """A version as storage holds it: its number and files (model.onnx and external data)."""

    number: int
    files: tuple[RemoteFile, ...]

    @property
    def fingerprint(self) -> str:
        """Changes whenever any file of the version changes: a fixed object is tried again."""
        digest = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.path):
            digest.update(f"{f.path}\0{f.size}\0{f.etag}\n".encode())
        return digest.hexdigest()[:16]


class ModelSource(Protocol):
    """A model URI bound to its store: what the repository manager talks to."""

    uri: str

    async def list_versions(self) -> dict[int, RemoteVersion]:
        """The versions storage holds now (a single-file URI is version 1). Retries transient
        failures with backoff up to the settings' deadline, then raises StorageError."""
        ...

    async def fetch(self, version: RemoteVersion, phases: StartPhases | None = None) -> Path:
        """Download ``version`` into a temporary folder, verify it (paths, sizes, sha256),
        rename it into place under the model folder, and return the path of its model.onnx.
        The download and verify times are added to ``phases`` when given."""
        ...

    def release(self, model: Path) -> None:
        """The repository no longer serves the version whose model.onnx ``fetch`` returned
        as ``model`` (retired, or it failed to load): the model cache may evict it."""
        ...


# --- The byte-moving half: one implementation per URI scheme -------------------------------

ProgressFn = Callable[[int], None]
"""Called with the number of bytes just written (negative to undo a failed attempt)."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object in a store, ``key`` relative to the store's root (posix, as listed)."""

    key: str
    size: int
    etag: str


class ObjectStore(Protocol):
    """Lists and downloads objects under one root (bucket + prefix, folder, URL directory).

    The methods block (SDK and socket calls); ``layout.py`` runs them in worker threads.
    They raise the StorageError family only, with messages that name ``location`` and the key
    but never a credential.
    """

    location: str
    """Where the root is, for messages: ``s3://bucket/prefix``; never holds a credential."""

    hosts: tuple[str, ...]
    """The network endpoints (``host`` or ``host:port``) the store will contact; checked
    against ``allowed_hosts`` before any call. Empty for local files."""

    ranged: bool
    """Whether ``download`` honours byte ranges, so large objects can be fetched in parts."""

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, recursively."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """One object's size and etag; NotFoundError if it is absent."""
        ...

    def download(
        self, key: str, dest: Path, *, offset: int, length: int | None, progress: ProgressFn
    ) -> None:
        """Write bytes ``[offset, offset + length)`` of ``key`` (the whole object when
        ``length`` is None and ``offset`` is 0, creating ``dest``) into ``dest`` at ``offset``."""
        ...


class WritableStore(ObjectStore, Protocol):
    """A store that ``modelfleet models push`` can write to (s3, gs, file). Writes never
    replace an object that ``create`` made: that is what makes two concurrent pushes end as
    two whole versions."""

    def upload(self, key: str, source: Path) -> None:
        """Write the file ``source`` to ``key`` (large files in parts where the store can)."""
        ...

    def create(self, key: str, data: bytes) -> bool:
        """Write ``data`` to ``key`` only if no object is there (one atomic, conditional
        write); False if one already is."""
        ...
