"""Model archives (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``), as KServe's storage initializer
takes them: a URI naming one archive is version 1, unpacked into its version folder.

Every member is checked before anything is written (RELIABILITY S10, tar-slip): a name that is
absolute, climbs with ``..`` or holds a drive letter or backslash, a symbolic or hard link, a
device or FIFO refuses the whole archive, with the member named. Extraction then writes only
regular files and folders, through ``tarfile``'s ``data`` filter as a second line. An archive
that would not fit on the disk is refused before it is unpacked.

The version is the archive's top level, or its one folder when that is all it holds (what
``tar czf iris.tgz iris/`` makes); the model is ``model.onnx`` there, else the one ``.onnx``
file there, renamed ``model.onnx``. External-data files keep their names beside it.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..schemes import ARCHIVE_SUFFIXES
from .base import StorageError, UnsafePathError
from .paths import check_relative, contained

MODEL_FILE = "model.onnx"
_COPY_CHUNK = 1024 * 1024


def is_archive(name: str) -> bool:
    """Whether a key or file name names an archive this module unpacks."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack(archive: Path, dest: Path, *, where: str) -> None:
    """Unpack ``archive`` into ``dest`` (an empty folder) as one version folder holding
    ``model.onnx``; raise UnsafePathError or StorageError saying what is wrong with it."""
    staging = dest / ".unpacked"
    staging.mkdir()
    if archive.name.lower().endswith(".zip"):
        _unzip(archive, staging, where=where)
    else:
        _untar(archive, staging, where=where)
    _place(staging, dest, where=where)
    shutil.rmtree(staging)


def _name(raw: str, *, where: str) -> str | None:
    """A member's checked relative name (``./`` prefixes dropped); None for the top folder."""
    name = raw.rstrip("/")
    while name.startswith("./"):
        name = name[2:]
    if name in ("", "."):
        return None
    return check_relative(name, where=where)


def _fits(total: int, dest: Path, *, where: str) -> None:
    free = shutil.disk_usage(dest).free
    if total > free:
        raise StorageError(
            f"{where}: the archive unpacks to {total} bytes; {free} are free under {dest}",
            reason="LocalWriteFailed",
        )


def _untar(archive: Path, staging: Path, *, where: str) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = list(_tar_members(tar, where=where))
            _fits(sum(m.size for m in members), staging, where=where)
            tar.extractall(staging, members=members, filter="data")
    except tarfile.TarError as exc:
        raise StorageError(
            f"{where}: not a readable tar archive: {exc}", reason="InvalidArchive"
        ) from None


def _tar_members(tar: tarfile.TarFile, *, where: str) -> Iterator[tarfile.TarInfo]:
    for member in tar.getmembers():
        name = _name(member.name, where=where)
        if member.issym() or member.islnk():
            raise UnsafePathError(f"{where}: refusing member {member.name!r}: a link")
        if not (member.isfile() or member.isdir()):
            raise UnsafePathError(f"{where}: refusing member {member.name!r}: not a file")
        if name is not None:
            yield member


def _unzip(archive: Path, staging: Path, *, where: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [(info, _zip_name(info, where=where)) for info in zf.infolist()]
            _fits(sum(info.file_size for info, _ in members), staging, where=where)
            for info, name in members:
                if name is None:
                    continue
                target = contained(staging, name)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("xb") as out:
                    shutil.copyfileobj(src, out, _COPY_CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise StorageError(
            f"{where}: not a readable zip archive: {exc}", reason="InvalidArchive"
        ) from None


def _zip_name(info: zipfile.ZipInfo, *, where: str) -> str | None:
    name = _name(info.filename, where=where)
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer set no Unix type
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafePathError(f"{where}: refusing member {info.filename!r}: not a file")
    return name


def _place(staging: Path, dest: Path, *, where: str) -> None:
    """Move the version's files from ``staging`` into ``dest``, the model as model.onnx."""
    root = staging
    entries = list(root.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        root = entries[0]  # tar czf iris.tgz iris/
    model = root / MODEL_FILE
    if not model.is_file():
        candidates = sorted(p for p in root.glob("*.onnx") if p.is_file())
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise StorageError(
                f"{where}: the archive must hold {MODEL_FILE}, or exactly one .onnx file, at "
                f"its top level (found: {found})",
                reason="NotFound",
            )
        model = candidates[0]
    for entry in root.iterdir():
        entry.rename(dest / (MODEL_FILE if entry == model else entry.name))
