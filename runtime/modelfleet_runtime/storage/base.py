"""The seam between the model repository and object storage.

``models/repository.py`` calls ``open_source(settings)`` (in ``storage/__init__.py``) and then
only the two methods of ``ModelSource``: list what versions storage holds, and fetch one into
the local model folder. One module per URI scheme implements the byte-moving part
(``ObjectStore``); the version layout, path containment, digests and atomic promotion are
shared and live in ``storage/layout.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


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

    async def fetch(self, version: RemoteVersion) -> Path:
        """Download ``version`` into a temporary folder, verify it (paths, sizes, sha256),
        rename it into place under the model folder, and return the path of its model.onnx."""
        ...
