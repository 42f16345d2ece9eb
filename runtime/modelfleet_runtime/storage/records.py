"""A folder's record: each file's size and sha256, and the stat stamp each file had when it
was last hashed; and the check that a folder still holds exactly what its record says.

The model cache (``cache.py``) keeps a record of every entry (``entries/<key>.json``) and checks
the entry against it before each reuse; warm starts (``models/warm.py``) keep one beside each
saved optimized graph (``digests.json``) and check it the same way. Unless a check is ``full``,
a file whose stamp is unchanged is not hashed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel

from .manifest import FileDigest, digest_of

_HASH_THREADS = 4


class Record(BaseModel):
    """What a folder held when it was written: each file's size and sha256 (``files``), and
    the stat stamp (inode, size, mtime, ctime, in ns) each file had when it was last hashed."""

    files: dict[str, FileDigest]
    stamps: dict[str, list[int]] = {}


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _files(folder: Path, exclude: frozenset[str]) -> set[str]:
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    return found - exclude


def record_of(
    folder: Path, known: Mapping[str, str], exclude: frozenset[str] = frozenset()
) -> Record:
    """The record of every file under ``folder`` (but ``exclude``): sha256 from ``known``
    (path -> hex, already checked by the caller) or hashed here."""
    files, stamps = {}, {}
    for name in sorted(_files(folder, exclude)):
        path = folder / name
        stamps[name] = _stamp(path)
        digest = known.get(name)
        files[name] = (
            digest_of(path) if digest is None else FileDigest(size=stamps[name][1], sha256=digest)
        )
    return Record(files=files, stamps=stamps)


def matches(
    folder: Path, record: Record, *, full: bool, exclude: frozenset[str] = frozenset()
) -> Record | None:
    """``record`` (with fresh stamps where files were hashed) when ``folder`` holds exactly its
    files with its sizes and digests, else None. Unless ``full``, a file whose stat stamp is
    the one recorded is not hashed again: its inode, size, mtime and ctime are unchanged, and
    no write through the file system keeps the ctime (``utime`` sets it to now)."""
    names = list(record.files)
    if _files(folder, exclude) != set(names):
        return None
    stamps = {name: _stamp(folder / name) for name in names}
    if any(stamps[n][1] != record.files[n].size for n in names):
        return None
    rehash = [n for n in names if full or record.stamps.get(n) != stamps[n]]
    with ThreadPoolExecutor(min(_HASH_THREADS, len(rehash) or 1)) as pool:
        got = list(pool.map(digest_of, (folder / n for n in rehash)))
    if any(digest != record.files[n] for n, digest in zip(rehash, got, strict=True)):
        return None
    return Record(files=record.files, stamps=stamps)
