"""File locks (``flock(2)``) that several server processes, or pods sharing a volume, agree on.

The kernel drops a process's locks when it dies, however it dies (an OOM kill, SIGKILL), so a
lock both says "someone is at work here" and cleans up after a crash. ``layout.py`` holds one on
each download folder (``held``) and removes the folders nobody holds (``sweep_abandoned``); the
model cache (``cache.py``) locks its entries (``lock``, ``try_lock``, ``wait_lock``) and the warm
starts (``models/warm.py``) stage their files the way downloads do (``staging``).

Lock files that may be deleted while someone waits on them (an evicted cache entry's) are
opened through ``lock``, which checks after locking that the path still names the file it
locked: otherwise two processes could each hold "the" exclusive lock on two different files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SHARED, EXCLUSIVE = fcntl.LOCK_SH, fcntl.LOCK_EX


def lock_path(tmp: Path) -> Path:
    """The lock file of the download folder ``tmp``."""
    return tmp.with_name(tmp.name + ".lock")


@contextlib.contextmanager
def held(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` while a download writes; the kernel drops it
    when the process dies, however it dies."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        lock_file.unlink(missing_ok=True)
        os.close(fd)


def _abandoned(lock_file: Path) -> bool:
    """Whether nobody holds ``lock_file`` (checked by taking it, without waiting)."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return False  # its writer is between mkdtemp and the lock, or already done
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the lock if this call took it
    return True


def sweep_abandoned(base: Path) -> list[Path]:
    """Remove the download folders under ``base`` that a dead process left; returns them."""
    removed = []
    for tmp in base.glob(".tmp-*"):
        if not tmp.is_dir():
            continue
        lock_file = lock_path(tmp)
        if _abandoned(lock_file):
            shutil.rmtree(tmp, ignore_errors=True)
            lock_file.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.info("Removed %d abandoned download folder(s) under %s", len(removed), base)
    return removed


@contextlib.contextmanager
def staging(base: Path, prefix: str) -> Iterator[Path]:
    """A new folder ``base/.tmp-<prefix>*``, held (``held``) while the caller writes into it
    and removed afterwards (the caller renames what it keeps out of it first). Folders that
    dead processes left under ``base`` are swept first."""
    base.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(base)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{prefix}", dir=base))
    try:
        with held(lock_path(tmp)):
            yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def lock(path: Path, mode: int) -> int:
    """Open and ``flock`` ``path`` with ``mode`` (``SHARED`` or ``EXCLUSIVE``, ``| LOCK_NB``
    not to wait); return the descriptor, whose closing releases the lock. Raises
    BlockingIOError when ``LOCK_NB`` is given and another holds a conflicting lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            named = os.stat(path)
        except FileNotFoundError:  # deleted by its last holder while we waited: start again
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        mine = os.fstat(fd)
        if (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino):
            return fd
        os.close(fd)


def try_lock(path: Path, mode: int) -> int | None:
    """``lock`` without waiting: None when another process (or descriptor) holds it."""
    try:
        return lock(path, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return None


async def wait_lock(path: Path, mode: int) -> int:
    """``lock``, waiting in a daemon thread so that the event loop keeps serving (and a
    process exiting is not held up by a thread blocked in ``flock``). If the caller is
    cancelled while it waits, the lock is released as soon as the thread gets it."""
    fd = try_lock(path, mode)
    if fd is not None:
        return fd
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()

    def settle(fd: int | None, error: BaseException | None) -> None:
        if future.cancelled():
            if fd is not None:
                os.close(fd)
        elif fd is not None:
            future.set_result(fd)
        else:
            future.set_exception(error or OSError(f"cannot lock {path}"))

    def wait() -> None:
        fd: int | None = None
        error: BaseException | None = None
        try:
            fd = lock(path, mode)
        except BaseException as exc:  # handed to the waiting coroutine
            error = exc
        try:
            loop.call_soon_threadsafe(settle, fd, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            if fd is not None:
                os.close(fd)

    threading.Thread(target=wait, name="modelfleet-lock", daemon=True).start()
    return await future
