"""Download progress: a tqdm bar in a terminal, a log line at most every few seconds in a pod.

``download.py`` makes one ``Progress`` per version fetch; the store threads call ``add`` with the
bytes they write (thread-safe).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import Never

from tqdm import tqdm

log = logging.getLogger(__name__)

LOG_INTERVAL = 5.0
"""Seconds between progress log lines when stderr is not a terminal (a pod's log)."""


class Progress:
    """Counts bytes of one fetch. Use as a context manager; ``add`` may be called from threads."""

    def __init__(self, label: str, total: int, *, interval: float = LOG_INTERVAL) -> None:
        self._label = label
        self._total = total
        self._done = 0
        self._interval = interval
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_log = self._started
        self._bar: tqdm[Never] | None = None
        if sys.stderr.isatty():
            self._bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, leave=False)

    def add(self, nbytes: int) -> None:
        """Record ``nbytes`` more written (negative when a failed attempt is undone)."""
        with self._lock:
            self._done += nbytes
            if self._bar is not None:
                self._bar.update(nbytes)
                return
            now = time.monotonic()
            if now - self._last_log < self._interval:
                return
            self._last_log = now
            done = self._done
        log.info(
            "downloading %s: %d of %d bytes (%.0f%%)",
            self._label,
            done,
            self._total,
            100.0 * done / max(self._total, 1),
        )

    @property
    def done(self) -> int:
        """Bytes written so far."""
        with self._lock:
            return self._done

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
        if exc_type is None:
            log.info(
                "downloaded %s: %d bytes in %.1f s",
                self._label,
                self._done,
                time.monotonic() - self._started,
            )
