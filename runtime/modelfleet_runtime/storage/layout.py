"""The version layout shared by every scheme: list versions, fetch one, verify, promote.

``open_source`` wraps each ``ObjectStore`` in a ``StoreSource``; the model repository then calls
its two ``ModelSource`` methods. A URI names one ``.onnx`` file (version 1), one archive
(version 1, unpacked by ``archive.py``) or a repository folder of numbered version folders
(``1/model.onnx`` plus external-data files beside it).

A fetch downloads into ``model_dir/<model>/.tmp-*``, checks every path, size and the
configured sha256, then renames the folder to ``<version>-<fingerprint>`` in one step: a reader
sees a whole version or none, and a failed or cancelled fetch leaves nothing behind.

A process killed mid-download (an OOM kill; a pod's emptyDir outlives its container's restarts)
cannot clean up, so each download holds an exclusive ``flock`` on ``.tmp-*.lock`` beside its
folder, and every fetch first removes the folders whose lock nobody holds: a dead writer's, never
a live one's, even with several servers sharing one ``model_dir`` (``locks.py``).

With ``cache_dir`` set, a fetch goes through the model cache (``cache.py``) instead: the version
is looked up by its key (``_cache_key``), and downloaded into the cache only when it is absent.

How a listing groups into versions is ``versions.py``'s; the parallel download of a version's
files (ranges, hashing as parts arrive, progress, retries) is ``download.py``'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import time
from pathlib import Path

from ..config import Settings
from ..metrics import Metrics
from ..schemes import scheme_of
from ..startup import StartPhases
from . import manifest
from .archive import is_archive, unpack
from .base import (
    IntegrityError,
    ObjectStore,
    RemoteFile,
    RemoteVersion,
    StorageError,
    UnsafePathError,
)
from .cache import ModelCache, version_key
from .download import download_files
from .locks import staging
from .paths import check_relative, version_number
from .retry import Retrier
from .versions import MODEL_FILE, flat_version, group_versions, version_files

log = logging.getLogger(__name__)

ARCHIVE_DIR = ".archive"
"""Where a version that is one archive is downloaded, inside its temporary folder."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class StoreSource:
    """A ``ModelSource`` over one ``ObjectStore``. ``single_key`` is set when the URI names
    one file (served as version 1 under the name ``model.onnx``)."""

    def __init__(
        self,
        uri: str,
        store: ObjectStore,
        settings: Settings,
        *,
        single_key: str | None,
        metrics: Metrics | None = None,
    ) -> None:
        self.uri = uri
        self._cache: ModelCache | None = None
        if settings.cache_dir is not None:
            self._cache = ModelCache(settings, metrics)
        self._store = store
        self._settings = settings
        self._single_key = single_key
        self._base = settings.model_dir / _folder_name(settings.model_name, uri)
        self._pushed = False
        """Whether the repository holds pushed versions (``modelfleet models push``): then
        every version must have its manifest and match it."""
        self._flat = False
        """Whether the folder is one flat version (see ``flat_version``)."""

    def _retrier(self) -> Retrier:
        s = self._settings
        return Retrier(
            initial=s.retry_initial_backoff, cap=s.retry_max_backoff, deadline=s.retry_deadline
        )

    async def list_versions(self) -> dict[int, RemoteVersion]:
        """The versions storage holds now ({} when the repository is empty)."""
        if self._single_key is not None:
            key = self._single_key
            info = await self._retrier().call(
                f"{self.uri}", lambda: asyncio.to_thread(self._store.stat, key)
            )
            name = f"{ARCHIVE_DIR}/{key.rsplit('/', 1)[-1]}" if is_archive(key) else MODEL_FILE
            return {1: RemoteVersion(1, (RemoteFile(name, info.size, info.etag),))}
        objects = await self._retrier().call(
            self.uri, lambda: asyncio.to_thread(self._store.list, "")
        )
        flat = flat_version(objects, where=self._store.location)
        self._flat = flat is not None
        if flat is not None:
            return {1: flat}
        versions = group_versions(objects, where=self._store.location)
        self._pushed = any(
            f.path in (manifest.MANIFEST_FILE, manifest.CLAIM_FILE)
            for files in version_files(objects, where=self._store.location).values()
            for f in files
        )
        return versions

    def _remote_key(self, version: RemoteVersion, file: RemoteFile) -> str:
        if self._single_key is not None:
            return self._single_key
        if self._flat:
            return file.path
        return f"{version.number}/{file.path}"

    async def fetch(self, version: RemoteVersion, phases: StartPhases | None = None) -> Path:
        """Download, verify and promote ``version``; return its local model.onnx."""
        phases = phases or StartPhases()
        files = _checked_files(version, where=self._store.location)
        has_manifest = any(f.path == manifest.MANIFEST_FILE for f in files)
        if self._pushed and not has_manifest:  # refused before downloading anything
            raise manifest.missing(self.uri, version.number)
        if self._cache is not None:
            return await self._fetch_cached(version, files, self._cache, phases)
        final = self._base / f"{version.number}-{version.fingerprint}"
        if final.is_dir():
            started = time.perf_counter()
            await self._check_digest(version.number, final / MODEL_FILE)
            phases.add("verify", since=started)
            return final / MODEL_FILE
        await self._download_version(version, files, self._base, final, phases)
        return final / MODEL_FILE

    async def _fetch_cached(
        self,
        version: RemoteVersion,
        files: list[RemoteFile],
        cache: ModelCache,
        phases: StartPhases,
    ) -> Path:
        """The version's model.onnx in the cache, downloaded into it only when absent. The
        time the cache spends beyond this process's own download counts as verify: checking a
        hit, and also waiting while another process downloads the version for everyone."""
        started = time.perf_counter()
        key = await self._cache_key(version, files, cache)
        filled = StartPhases()

        async def fill(base: Path, final: Path) -> dict[str, str]:
            return await self._download_version(version, files, base, final, filled)

        where = f"{self.uri} version {version.number}"
        size = sum(f.size for f in files)
        path = await cache.open(key, size, fill, where=where) / MODEL_FILE
        total = time.perf_counter() - started
        for phase, seconds in filled.seconds.items():
            phases.seconds[phase] += seconds
        phases.seconds["verify"] += max(0.0, total - sum(filled.seconds.values()))
        return path

    async def _cache_key(
        self, version: RemoteVersion, files: list[RemoteFile], cache: ModelCache
    ) -> str:
        """The version's cache key (``cache.version_key``): content digests where something
        states them before the download (the pushed manifest, whose bytes are fetched for it;
        the configured sha256; an OCI image's manifest digest), storage's identity of the
        other files."""
        content: dict[str, str] = {}
        expected = self._settings.sha256.get(version.number)
        if expected is not None:
            content[MODEL_FILE] = f"sha256:{expected}"
        pushed = next((f for f in files if f.path == manifest.MANIFEST_FILE), None)
        if pushed is not None:
            data = await self._read_small(version, pushed, cache.staging)
            content[pushed.path] = f"sha256:{hashlib.sha256(data).hexdigest()}"
            where = f"{self.uri} version {version.number}"
            for name, digest in manifest.Manifest.parse(data, where=where).files.items():
                content.setdefault(name, f"sha256:{digest.sha256}")
        image = scheme_of(self.uri).names_image  # the etag is the image manifest's digest
        remote = {}
        for f in files:
            if f.path in content:
                continue
            if image:
                content[f.path] = f"image:{f.etag}"
            else:
                location = f"{self._store.location}/{self._remote_key(version, f)}"
                remote[f.path] = f"{location} {f.size} {f.etag}"
        return version_key(content, remote)

    async def _read_small(self, version: RemoteVersion, file: RemoteFile, base: Path) -> bytes:
        """The bytes of one small file of ``version`` (its manifest), staged under ``base``."""
        key = self._remote_key(version, file)

        def read() -> bytes:
            with staging(base, "read-") as tmp:
                dest = tmp / "file"
                self._store.download(key, dest, offset=0, length=None, progress=_ignore)
                return dest.read_bytes()

        what = f"{self._store.location}/{key}"
        return await self._retrier().call(what, lambda: asyncio.to_thread(read))

    def release(self, model: Path) -> None:
        """The repository no longer serves the version at ``model``: a cached version may now
        be evicted by any process."""
        if self._cache is not None:
            self._cache.release(model.parent)

    async def _download_version(
        self,
        version: RemoteVersion,
        files: list[RemoteFile],
        base: Path,
        final: Path,
        phases: StartPhases,
    ) -> dict[str, str]:
        """Download ``version`` into a new folder under ``base``, verify it and rename it to
        ``final``. Returns the sha256 of the files it checked, by path."""
        checked: dict[str, str] = {}
        try:
            with staging(base, f"{version.number}-") as tmp:
                started = time.perf_counter()
                hashed = self._hashed_while_downloading(files, version.number)
                digests = await download_files(
                    self._store,
                    [(file, self._remote_key(version, file)) for file in files],
                    tmp,
                    hashed,
                    label=f"{self.uri} version {version.number}",
                    number=version.number,
                    settings=self._settings,
                    retrier=self._retrier(),
                )
                for archive in filter(_is_archive_file, files):
                    await asyncio.to_thread(unpack, tmp / archive.path, tmp, where=self.uri)
                    shutil.rmtree(tmp / ARCHIVE_DIR)
                started = phases.add("download", since=started)
                if (tmp / manifest.MANIFEST_FILE).is_file() or any(
                    f.path == manifest.MANIFEST_FILE for f in files
                ):
                    pushed = await asyncio.to_thread(
                        manifest.verify, tmp, number=version.number, where=self.uri, known=digests
                    )
                    checked = {name: file.sha256 for name, file in pushed.files.items()}
                digest = await self._check_digest(version.number, tmp / MODEL_FILE, digests)
                if digest is not None:
                    checked[MODEL_FILE] = digest
                phases.add("verify", since=started)
                _promote(tmp, final)
        except OSError as exc:
            raise StorageError(
                f"{self.uri}: writing version {version.number} under {base} failed: "
                f"{exc.strerror or type(exc).__name__}",
                reason="LocalWriteFailed",
            ) from None
        return checked

    def _hashed_while_downloading(self, files: list[RemoteFile], number: int) -> set[str]:
        """The files whose sha256 a check will want: every file a manifest lists, else
        model.onnx when ``--sha256`` names this version (never an archive: its digest is
        checked by nobody; what it unpacks to is hashed after unpacking)."""
        if any(f.path == manifest.MANIFEST_FILE for f in files):
            return {f.path for f in files if not _is_archive_file(f)}
        return {MODEL_FILE} if number in self._settings.sha256 else set()

    async def _check_digest(
        self, number: int, model: Path, known: dict[str, str] | None = None
    ) -> str | None:
        """Check ``model`` against the configured sha256 of version ``number``; returns the
        digest, or None when none is configured."""
        expected = self._settings.sha256.get(number)
        if expected is None:
            return None
        got = (known or {}).get(MODEL_FILE) or await asyncio.to_thread(manifest.sha256_file, model)
        if got != expected:
            raise IntegrityError(
                f"{self.uri}: version {number} model.onnx has sha256 {got}, expected {expected}"
            )
        return got


def _checked_files(version: RemoteVersion, *, where: str) -> list[RemoteFile]:
    if version_number(str(version.number), where=where) is None:
        raise UnsafePathError(f"{where}: version {version.number!r} is not a positive integer")
    for f in version.files:
        check_relative(f.path, where=where)
    if not any(f.path == MODEL_FILE or _is_archive_file(f) for f in version.files):
        raise StorageError(
            f"{where}: version {version.number} has no {MODEL_FILE}", reason="NotFound"
        )
    return list(version.files)


def _ignore(_nbytes: int) -> None:
    """A progress callback for reads too small to report."""


def _is_archive_file(file: RemoteFile) -> bool:
    """Whether ``file`` is a version's one archive (listed under ``ARCHIVE_DIR``)."""
    return file.path.startswith(f"{ARCHIVE_DIR}/")


def _promote(tmp: Path, final: Path) -> Path:
    """Rename ``tmp`` to ``final`` atomically; if a concurrent fetch got there first, keep
    theirs (same fingerprint, same bytes)."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.is_dir():
            raise
    return final


def _folder_name(name: str, uri: str) -> str:
    """The model's folder under model_dir: its name when that is a safe file name, else a
    hash of the URI (a name from the command line is not trusted as a path)."""
    if _SAFE_NAME.fullmatch(name) and name not in (".", ".."):
        return name
    return "model-" + hashlib.sha256(uri.encode()).hexdigest()[:12]
