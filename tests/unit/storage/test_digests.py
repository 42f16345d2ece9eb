"""The sha256 computed while parts arrive (storage/digests.py): in any finishing order it is
the file's own digest, and a file the parts never covered gets none (the caller then hashes it
the ordinary way)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelfleet_runtime.storage.digests import PartHasher

MiB = 1024 * 1024


@pytest.fixture
def one_thread() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1)
    yield pool
    pool.shutdown(wait=True)


def _file(tmp_path: Path, size: int) -> tuple[Path, str]:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _parts(size: int, part: int) -> list[tuple[int, int]]:
    return [(offset, min(part, size - offset)) for offset in range(0, size, part)]


@pytest.mark.parametrize("order", ["in order", "reversed", "shuffled"])
def test_any_finishing_order_gives_the_files_digest(
    tmp_path: Path, one_thread: ThreadPoolExecutor, order: str
) -> None:
    size = 9 * MiB + 12345  # a short last part
    path, expected = _file(tmp_path, size)
    parts = _parts(size, MiB)
    if order == "reversed":
        parts.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(parts)
    hasher = PartHasher(path, size, one_thread)
    for offset, length in parts:
        hasher.finished(offset, length)
    assert hasher.digest() == expected


def test_parts_finishing_from_many_threads(tmp_path: Path, one_thread: ThreadPoolExecutor) -> None:
    size = 16 * MiB + 1
    path, expected = _file(tmp_path, size)
    hasher = PartHasher(path, size, one_thread)
    parts = _parts(size, MiB // 2)
    random.Random(3).shuffle(parts)
    with ThreadPoolExecutor(8) as workers:
        list(workers.map(lambda part: hasher.finished(*part), parts))
    assert hasher.digest() == expected


def test_a_missing_part_gives_no_digest(tmp_path: Path, one_thread: ThreadPoolExecutor) -> None:
    size = 4 * MiB
    path, _ = _file(tmp_path, size)
    hasher = PartHasher(path, size, one_thread)
    for offset, length in _parts(size, MiB)[1:]:  # the first never finished
        hasher.finished(offset, length)
    assert hasher.digest() is None


def test_an_empty_file(tmp_path: Path, one_thread: ThreadPoolExecutor) -> None:
    path, expected = _file(tmp_path, 0)
    hasher = PartHasher(path, 0, one_thread)
    hasher.finished(0, 0)
    assert hasher.digest() == expected


def test_the_digest_is_of_the_bytes_on_disk(tmp_path: Path, one_thread: ThreadPoolExecutor) -> None:
    """What the check compares is what the folder holds: a byte changed on disk before its
    part finished shows in the digest (so a corrupt part can never pass as a good one)."""
    size = 3 * MiB
    path, good = _file(tmp_path, size)
    with path.open("r+b") as f:
        f.seek(MiB + 5)
        f.write(b"\x00")
    hasher = PartHasher(path, size, one_thread)
    for offset, length in _parts(size, MiB):
        hasher.finished(offset, length)
    got = hasher.digest()
    assert got is not None
    assert got != good
    assert got == hashlib.sha256(path.read_bytes()).hexdigest()
