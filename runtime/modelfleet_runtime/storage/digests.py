"""The sha256 of a file computed while its parts download, so that verifying a version costs no
second pass over its bytes.

``download.py`` downloads a large file in byte ranges that finish in any order. A ``PartHasher``
learns of each part once its download has returned (its bytes are on disk and no later write
touches them: parts are disjoint, and a part is retried only before it succeeds), and hashes the
file in order, from the file itself, as far as the finished parts reach without a gap. The
hashing runs on one thread of its own (``hashlib`` and ``os.pread`` release the GIL), overlapping
the parts still downloading; ``digest()`` waits for the tail. The digest is therefore that of the
bytes the version folder holds, the same as a second pass would compute, and the manifest and
``--sha256`` checks compare against it as before: a file whose digest does not match is still
refused, never served.

Hand-written because no library hashes a file assembled out of order from ranges; it is one
contiguous watermark over a set of finished ranges.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Executor, Future
from pathlib import Path

_CHUNK = 4 * 1024 * 1024


class PartHasher:
    """The sha256 of ``path`` (``size`` bytes), fed by ``finished`` calls from any thread."""

    def __init__(self, path: Path, size: int, executor: Executor) -> None:
        self._path = path
        self._size = size
        self._executor = executor
        self._lock = threading.Lock()
        self._finished: dict[int, int] = {}  # offset -> length of parts not hashed yet
        self._reached = 0  # the finished parts cover [0, _reached) without a gap
        self._hashed = 0  # bytes hashed so far, always <= _reached
        self._sha = hashlib.sha256()
        self._pending: Future[None] | None = None

    def finished(self, offset: int, length: int) -> None:
        """Part ``[offset, offset + length)`` is on disk for good."""
        with self._lock:
            self._finished[offset] = length
            while self._reached in self._finished:
                self._reached += self._finished.pop(self._reached)
            if self._hashed < self._reached:
                self._pending = self._executor.submit(self._catch_up)

    def _catch_up(self) -> None:
        """Hash up to the current watermark (runs on the executor's one thread, in order)."""
        with self._lock:
            target = self._reached
        if self._hashed >= target:
            return
        fd = os.open(self._path, os.O_RDONLY)
        try:
            while self._hashed < target:
                data = os.pread(fd, min(_CHUNK, target - self._hashed), self._hashed)
                if not data:
                    raise OSError(f"{self._path} ended at byte {self._hashed} of {target}")
                self._sha.update(data)
                self._hashed += len(data)
        finally:
            os.close(fd)

    def digest(self) -> str | None:
        """The hex digest once every byte was hashed; None if the parts never covered the
        whole file (the caller then hashes it the ordinary way). Waits for the tail."""
        with self._lock:
            pending = self._pending
        if pending is not None:
            pending.result()
        if self._hashed != self._size or self._reached != self._size:
            return None
        return self._sha.hexdigest()
