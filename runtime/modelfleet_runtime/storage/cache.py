"""The model cache by digest (``cache_dir``): versions kept under a key made from their content,
shared by every server process, and every pod, that mounts the folder.

``layout.StoreSource.fetch`` calls ``ModelCache.open`` when ``cache_dir`` is set; the model
repository calls ``release`` (through ``StoreSource.release``) when it no longer serves a
version. Under ``cache_dir``::

    entries/<key>/       a whole version as a fetch promotes it (model.onnx, external data, ...)
    entries/<key>.json   its record: each file's size and sha256; its mtime is the last use
    entries/<key>.opt/   ONNX Runtime's optimized graphs of it (``models/warm.py``)
    locks/<key>.fill     exclusive while a process downloads or replaces the version,
                         shared while one looks it up
    locks/<key>.use      shared while a process serves the version; eviction needs it exclusive
    staging/             downloads in progress (``locks.staging``)

**Keys** (``version_key``): a sha256 over one line per file. A file whose content digest is
known before the download contributes that digest: every file of a pushed version (its
``modelfleet.json``, fetched first, lists them, and its own bytes are hashed), model.onnx when
``sha256`` names it, an OCI image's layer (the image manifest's digest). Then the key starts with
``c-`` and means "these bytes", whichever URI they came from. Any other file (plain objects in a
bucket, which state no digest before they are read) contributes storage's identity of it: URI,
size and etag, and the key starts with ``r-``. That guarantee is weaker: a store that served
different bytes under the same etag would be served from the cache; S3, GCS and https
servers change the etag with the content, and local files' etag includes the modification time.
Either way, what is served is what was checked when it was downloaded (the record).

**Checks on reuse** (``records.matches``): a process taking a version from the cache first compares
the folder's files and sizes with the record, then hashes each file whose stat stamp (inode,
size, mtime, ctime) differs from the one recorded when it was last hashed; any file that differs
from its recorded sha256 (or a missing record) counts as ``corrupt``, and the version is fetched
again, never served. Any write through the file system changes a file's ctime, which no call can
set back, so an unchanged stamp means unchanged bytes short of corruption below the file system;
``cache_verify=always`` hashes everything on every start to catch that too. Why not always by
default: one sha256 pass runs at 0.5-1.2 GB/s on this project's machines (``bench/RESULTS.md``:
0.17 s for 200 MB unloaded, 0.4 s loaded), 10-25% more on a second server's whole start (1.5 s),
and the point of the cache is a start several times faster than a download.

**Locks** (``flock``, which the kernel drops when a process dies, so a killed downloader's
waiters take over at once): a lookup holds ``fill`` shared; a process that finds the version
absent or corrupt takes ``fill`` exclusive, looks again (another may have filled it meanwhile),
and downloads. Others wait in a thread (``locks.wait_lock``) without blocking the event loop.
A process serving a version holds ``use`` shared until ``release``; eviction takes ``fill`` and
``use`` exclusive without waiting, so it never removes a version that a live process holds.

Hand-written: the caches on PyPI (diskcache and kin) keep values in SQLite or their own files and
would copy gigabytes of model into them, and none holds readers' leases across processes; this
is a few flock calls over plain folders that ONNX Runtime loads in place.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from pydantic import ValidationError

from ..config import Settings
from ..metrics import Metrics
from . import locks
from .records import Record, matches, record_of

log = logging.getLogger(__name__)

OPTIMIZED_SUFFIX = ".opt"
"""``entries/<key>.opt``: where ``models/warm.py`` keeps the optimized graphs of entry <key>."""

Fill = Callable[[Path, Path], Awaitable[Mapping[str, str]]]
"""``fill(staging, final)`` downloads the version into a new folder under ``staging``, verifies
it and renames it to ``final``; returns the sha256 of the files it already checked (by path),
which are then not hashed again for the record."""


def version_key(content: Mapping[str, str], remote: Mapping[str, str]) -> str:
    """The cache key of a version from its files' content digests (path -> ``sha256:<hex>``
    or ``image:<digest>``) and storage's identity of the others (path -> ``uri size etag``)."""
    lines = sorted(f"{path}\0{digest}" for path, digest in content.items())
    lines += sorted(f"{path}\0{identity}" for path, identity in remote.items())
    prefix = "r-" if remote else "c-"
    return prefix + hashlib.sha256("\n".join(lines).encode()).hexdigest()


class ModelCache:
    """One process's view of the cache folder: looks versions up, fills them, holds them."""

    def __init__(self, settings: Settings, metrics: Metrics | None) -> None:
        assert settings.cache_dir is not None
        self._root = settings.cache_dir
        self._limit = settings.cache_size_limit
        self._full = settings.cache_verify == "always"
        self._model = settings.model_name
        self._metrics = metrics
        self._entries = self._root / "entries"
        self._locks = self._root / "locks"
        self.staging = self._root / "staging"
        self._held: dict[Path, list[int]] = {}  # entry folder -> descriptors of its use lock

    def _entry(self, key: str) -> Path:
        return self._entries / key

    def _record_path(self, key: str) -> Path:
        return self._entries / f"{key}.json"

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.cache_results.labels(self._model, result).inc()

    async def open(self, key: str, size: int, fill: Fill, *, where: str) -> Path:
        """The folder of version ``key``, checked and held for this process until
        ``release``: from the cache when it is there and intact, else filled by ``fill``
        (``size``: its bytes, to make room first). Waits while another process fills it."""
        await asyncio.to_thread(self._prepare)
        fill_lock = self._locks / f"{key}.fill"
        while True:
            fd = await self._wait(fill_lock, locks.SHARED, where)
            try:  # lookups run side by side; a fill excludes them
                state, seen = await asyncio.to_thread(self._check, key)
                if state == "intact":
                    return await self._hold(key, "hit")
            finally:
                os.close(fd)
            fd = await self._wait(fill_lock, locks.EXCLUSIVE, where)
            try:
                if self._changed(key, state, seen):
                    continue  # another process filled or replaced it meanwhile: look again
                if state == "corrupt":
                    log.warning(
                        "%s: the cached copy differs from its record; fetching it again", where
                    )
                    self._count("corrupt")
                await asyncio.to_thread(self._remove, key)
                await asyncio.to_thread(self._evict, size, key)
                checked = await fill(self.staging, self._entry(key))
                await asyncio.to_thread(self._write_record, key, checked)
                entry = await self._hold(key, "miss")
            finally:
                os.close(fd)
            await asyncio.to_thread(self._evict, 0, key)
            return entry

    async def _wait(self, lock_file: Path, mode: int, where: str) -> int:
        fd = locks.try_lock(lock_file, mode)
        if fd is None:
            log.info("%s: another process is fetching or checking it; waiting", where)
            fd = await locks.wait_lock(lock_file, mode)
        return fd

    def _changed(self, key: str, state: str, seen: int | None) -> bool:
        """Whether the entry is no longer as our lookup saw it (``seen``: its record's inode;
        a fill writes a new one)."""
        if state == "absent":
            return self._entry(key).exists()
        return seen is not None and _inode(self._record_path(key)) != seen

    async def _hold(self, key: str, result: str) -> Path:
        """Take the version's use lock for this process; count the lookup's result."""
        fd = await locks.wait_lock(self._locks / f"{key}.use", locks.SHARED)
        entry = self._entry(key)
        self._held.setdefault(entry, []).append(fd)
        try:
            os.utime(self._record_path(key))  # its last use, for the LRU order
        except OSError:
            pass
        self._count(result)
        return entry

    def release(self, entry: Path) -> None:
        """This process no longer serves the version in ``entry`` (once per ``open``)."""
        fds = self._held.get(entry)
        if fds:
            os.close(fds.pop())
            if not fds:
                del self._held[entry]

    # --- Blocking helpers, run in worker threads ---------------------------------------

    def _prepare(self) -> None:
        for folder in (self._entries, self._locks, self.staging):
            folder.mkdir(parents=True, exist_ok=True)
        for trash in self.staging.glob(".trash-*"):  # a process died while deleting it
            shutil.rmtree(trash, ignore_errors=True)

    def _check(self, key: str) -> tuple[str, int | None]:
        """``absent``, ``intact`` (``matches`` its record) or ``corrupt``, and the inode of
        the record read (None when there is none)."""
        entry, record_path = self._entry(key), self._record_path(key)
        if not entry.is_dir():
            return "absent", None
        seen = _inode(record_path)
        try:
            record = Record.model_validate_json(record_path.read_bytes())
        except (OSError, ValidationError):
            return "corrupt", seen  # a process died before writing it, or it was damaged
        checked = matches(entry, record, full=self._full)
        if checked is None:
            return "corrupt", seen
        if checked.stamps != record.stamps:  # hashed again and intact: skip that next time
            _write_json(record_path, checked)
        return "intact", seen

    def _write_record(self, key: str, checked: Mapping[str, str]) -> None:
        """Record every file of the new entry: the digests ``fill`` checked, others hashed."""
        _write_json(self._record_path(key), record_of(self._entry(key), checked))

    def _remove(self, key: str) -> None:
        """Delete an entry (its record first: a half-removed entry reads as corrupt)."""
        self._record_path(key).unlink(missing_ok=True)
        for folder in (self._entry(key), self._entries / f"{key}{OPTIMIZED_SUFFIX}"):
            if folder.exists():
                trash = self.staging / f".trash-{key}-{os.getpid()}-{time.monotonic_ns()}"
                folder.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)

    def _sizes(self) -> list[tuple[float, str, int]]:
        """(last use, key, bytes) of every entry, least recently used first."""
        found = []
        for entry in self._entries.iterdir():
            if not entry.is_dir() or entry.name.endswith(OPTIMIZED_SUFFIX):
                continue
            key = entry.name
            try:
                used = self._record_path(key).stat().st_mtime
            except OSError:
                used = 0.0  # no record: a broken entry goes first
            optimized = self._entries / f"{key}{OPTIMIZED_SUFFIX}"
            size = _folder_size(entry) + _folder_size(optimized)
            found.append((used, key, size))
        return sorted(found)

    def _evict(self, incoming: int, keep: str) -> None:
        """Remove least recently used entries that no process holds until the cache and
        ``incoming`` more bytes fit ``cache_size_limit``; never ``keep``."""
        if self._limit is None:
            return
        entries = self._sizes()
        total = sum(size for _, _, size in entries) + incoming
        for _, key, size in entries:
            if total <= self._limit:
                return
            if key != keep and self._try_evict(key):
                total -= size
                log.info("evicted cached version %s (%d bytes) to fit the cache's bound", key, size)
                if self._metrics is not None:
                    self._metrics.cache_evictions.inc()
        if total > self._limit:
            log.warning(
                "the model cache holds %d bytes, over its bound of %d: every other version in it "
                "is in use", total, self._limit,
            )  # fmt: skip

    def _try_evict(self, key: str) -> bool:
        """Remove ``key`` if no process looks it up, fills it or holds it (without waiting)."""
        fill_lock, use_lock = self._locks / f"{key}.fill", self._locks / f"{key}.use"
        fill_fd = locks.try_lock(fill_lock, locks.EXCLUSIVE)
        if fill_fd is None:
            return False
        try:
            use_fd = locks.try_lock(use_lock, locks.EXCLUSIVE)
            if use_fd is None:
                return False
            try:
                self._remove(key)
                use_lock.unlink(missing_ok=True)  # waiters see the path changed and retry
                fill_lock.unlink(missing_ok=True)
            finally:
                os.close(use_fd)
        finally:
            os.close(fill_fd)
        return True


def _write_json(path: Path, record: Record) -> None:
    """Write ``record`` to ``path`` in one rename: a reader sees the old one or the new."""
    partial = path.with_name(f"{path.name}.{os.getpid()}-{time.monotonic_ns()}")
    partial.write_text(record.model_dump_json())
    partial.replace(path)


def _folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it is gone: another process evicted it)."""
    total = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None
