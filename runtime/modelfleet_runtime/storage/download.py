"""A version's files downloaded in parallel, for ``layout.StoreSource``.

Large files go in byte ranges of ``download_part_size`` (where the store is ranged), all parts
on a private pool of ``download_concurrency`` threads, each part retried under the fetch's
``Retrier``. Each file's sha256 is taken as its parts arrive (``digests.py``), progress is
reported (``progress.py``), and on the first failure (or a cancellation) every other part
stops before the caller removes the folder. What to download, where the version goes, its
verification and promotion stay in ``layout.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from ..config import Settings
from .base import IntegrityError, ObjectStore, RemoteFile
from .digests import PartHasher
from .paths import contained
from .progress import Progress
from .retry import Retrier


class _Cancelled(Exception):
    """Raised inside a download thread once its fetch has already failed."""


async def download_files(
    store: ObjectStore,
    files: list[tuple[RemoteFile, str]],
    tmp: Path,
    hashed: set[str],
    *,
    label: str,
    number: int,
    settings: Settings,
    retrier: Retrier,
) -> dict[str, str]:
    """Download every file (its store key beside it) into ``tmp``, large ones in parallel
    ranges, on a private thread pool, so that on failure or cancellation every thread has
    stopped before ``tmp`` is removed. Returns the sha256 of each file in ``hashed``, computed
    as its parts arrived. ``label`` names the version in progress lines; ``number`` is its
    number, for errors."""
    total = sum(f.size for f, _ in files)
    stop = threading.Event()
    pool = ThreadPoolExecutor(settings.download_concurrency, "modelfleet-fetch")
    hash_pool = ThreadPoolExecutor(1, "modelfleet-hash")  # PartHasher needs one thread
    hashers: dict[str, PartHasher] = {}
    try:
        with Progress(label, total) as progress:
            jobs = []
            for file, key in files:
                dest = contained(tmp, file.path)
                dest.parent.mkdir(parents=True, exist_ok=True)
                hasher = None
                if file.path in hashed:
                    hasher = hashers[file.path] = PartHasher(dest, file.size, hash_pool)
                for offset, length in _parts(store, file, dest, settings.download_part_size):
                    span = (offset, file.size if length is None else length)
                    job = _Job(store, key, dest, offset, length, progress, stop)
                    job.done = partial(hasher.finished, *span) if hasher else None
                    jobs.append(_run_job(store, job, pool, retrier))
            await _all_or_first_error(jobs)
        _check_sizes([f for f, _ in files], tmp, where=store.location, number=number)
        found = {path: await asyncio.to_thread(h.digest) for path, h in hashers.items()}
        return {path: digest for path, digest in found.items() if digest is not None}
    finally:
        stop.set()
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(hash_pool.shutdown, wait=True, cancel_futures=True)


def _parts(
    store: ObjectStore, file: RemoteFile, dest: Path, part: int
) -> list[tuple[int, int | None]]:
    if not store.ranged or file.size <= part:
        return [(0, None)]
    with dest.open("wb") as f:
        f.truncate(file.size)
    return [(off, min(part, file.size - off)) for off in range(0, file.size, part)]


async def _run_job(
    store: ObjectStore, job: _Job, pool: ThreadPoolExecutor, retrier: Retrier
) -> None:
    loop = asyncio.get_running_loop()
    what = f"{store.location}/{job.key}"
    await retrier.call(what, lambda: loop.run_in_executor(pool, job.run))


class _Job:
    """One download call (a whole object or one byte range) that undoes its progress when
    it fails, so a retried part is not counted twice."""

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        dest: Path,
        offset: int,
        length: int | None,
        progress: Progress,
        stop: threading.Event,
    ) -> None:
        self.key = key
        self._store, self._dest, self._offset, self._length = store, dest, offset, length
        self._progress, self._stop = progress, stop
        self.done: Callable[[], None] | None = None
        """Called once the bytes are on disk (the download returned, its file closed)."""

    def run(self) -> None:
        written = 0

        def count(nbytes: int) -> None:
            nonlocal written
            if self._stop.is_set():
                raise _Cancelled
            written += nbytes
            self._progress.add(nbytes)

        try:
            self._store.download(
                self.key, self._dest, offset=self._offset, length=self._length, progress=count
            )
        except BaseException:
            self._progress.add(-written)
            raise
        if self.done is not None:
            self.done()


async def _all_or_first_error(jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines together; on the first failure cancel the rest and raise it."""
    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job)
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        raise first from None


def _check_sizes(files: list[RemoteFile], tmp: Path, *, where: str, number: int) -> None:
    for f in files:
        got = (tmp / f.path).stat().st_size
        if got != f.size:
            raise IntegrityError(
                f"{where}: version {number} file {f.path} is {got} bytes, storage listed "
                f"{f.size} (it changed during the download?)"
            )
