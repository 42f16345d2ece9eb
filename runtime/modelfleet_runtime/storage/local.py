"""Local files: ``file://`` URIs and plain paths, which is how a mounted PVC arrives.

Files are hard-linked into the model folder when both sit on one filesystem (no copy, no
extra disk), else copied. A symlink inside the repository is followed only when it resolves
inside the repository's root; one pointing elsewhere is refused (RELIABILITY S10).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..config import Settings
from ..schemes import file_stem
from .base import (
    AccessDeniedError,
    NotFoundError,
    ObjectInfo,
    ProgressFn,
    StorageError,
    UnavailableError,
    UnsafePathError,
)
from .uri import ParsedUri

_CHUNK = 1024 * 1024


class LocalStore:
    """Objects are the files under ``root``; keys are their posix paths relative to it."""

    hosts: tuple[str, ...] = ()
    ranged = False

    def __init__(self, root: Path) -> None:
        self._root = root
        self.location = f"file://{root}"

    def _resolved_root(self) -> Path:
        try:
            return self._root.resolve(strict=True)
        except OSError as exc:
            raise _map_os_error(exc, self.location) from None

    def _source(self, key: str) -> Path:
        root = self._resolved_root()
        target = (root / key).resolve()
        if not target.is_relative_to(root):
            raise UnsafePathError(f"{self.location}: {key!r} resolves outside the model folder")
        return target

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every regular file under the root whose relative path starts with ``prefix``."""
        root = self._resolved_root()
        if not root.is_dir():
            raise NotFoundError(f"{self.location}: not a folder")
        found = []
        for dirpath, _dirs, names in os.walk(root, followlinks=False):
            for name in names:
                key = (Path(dirpath) / name).relative_to(root).as_posix()
                if key.startswith(prefix):
                    found.append(self.stat(key))
        return found

    def stat(self, key: str) -> ObjectInfo:
        """Size and an etag made of the file's identity and modification time."""
        path = self._source(key)
        try:
            st = path.stat()
        except OSError as exc:
            raise _map_os_error(exc, f"{self.location}/{key}") from None
        if not path.is_file():
            raise NotFoundError(f"{self.location}/{key}: not a regular file")
        return ObjectInfo(key, st.st_size, f"{st.st_dev}-{st.st_ino}-{st.st_mtime_ns}")

    def download(
        self, key: str, dest: Path, *, offset: int, length: int | None, progress: ProgressFn
    ) -> None:
        """Hard-link the whole file when possible, else copy the requested bytes."""
        source = self._source(key)
        try:
            if offset == 0 and length is None and _try_link(source, dest):
                progress(dest.stat().st_size)
                return
            _copy(source, dest, offset, length, progress)
        except OSError as exc:
            raise _map_os_error(exc, f"{self.location}/{key}") from None

    def _target(self, key: str) -> Path:
        """Where a write of ``key`` goes: its folder created, inside the root."""
        self._root.mkdir(parents=True, exist_ok=True)
        target = self._source(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def upload(self, key: str, source: Path) -> None:
        """Copy into a hidden file beside the target, then rename it into place."""
        try:
            target = self._target(key)
            partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
            _copy(source, partial, 0, None, lambda _n: None)
            partial.rename(target)
        except OSError as exc:
            raise _map_os_error(exc, f"{self.location}/{key}") from None

    def create(self, key: str, data: bytes) -> bool:
        """``O_CREAT | O_EXCL``: the file system decides who was first."""
        try:
            fd = os.open(self._target(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise _map_os_error(exc, f"{self.location}/{key}") from None
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return True


def _try_link(source: Path, dest: Path) -> bool:
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            return False
        raise
    return True


def _copy(source: Path, dest: Path, offset: int, length: int | None, progress: ProgressFn) -> None:
    mode = "r+b" if dest.exists() and length is not None else "wb"
    remaining = length
    with source.open("rb") as src, dest.open(mode) as out:
        src.seek(offset)
        out.seek(offset)
        while remaining is None or remaining > 0:
            chunk = src.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
            if not chunk:
                break
            out.write(chunk)
            progress(len(chunk))
            if remaining is not None:
                remaining -= len(chunk)


def _map_os_error(exc: OSError, where: str) -> StorageError:
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return NotFoundError(f"{where}: not found")
    if isinstance(exc, PermissionError):
        return AccessDeniedError(f"{where}: permission denied; check the volume's permissions")
    # EIO, ESTALE and friends on a network volume may pass; anything else is worth a retry.
    return UnavailableError(f"{where}: {exc.strerror or type(exc).__name__}")


def open_store(parsed: ParsedUri, settings: Settings) -> tuple[LocalStore, str | None]:  # noqa: ARG001
    """The store for a local path: a file (or a path ending in ``.onnx`` or an archive
    suffix) is one model file, anything else a repository folder."""
    path = Path(parsed.path).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if path.is_file() or (file_stem(path.name) is not None and not path.is_dir()):
        return LocalStore(path.parent), path.name
    return LocalStore(path), None


def open_writable(parsed: ParsedUri, settings: Settings) -> LocalStore:
    """The store of a local repository folder, for ``modelfleet models push``."""
    return open_store(parsed, settings)[0]
