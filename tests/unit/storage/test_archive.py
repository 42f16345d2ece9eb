"""Model archives (``storage/archive.py``): the layouts people pack, and every tar-slip shape
refused before a byte is written (RELIABILITY S10)."""

from __future__ import annotations

import io
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from modelfleet_runtime.storage import StorageError, UnsafePathError
from modelfleet_runtime.storage.archive import is_archive, unpack
from tests.helpers.onnx_models import add_constant

MODEL = add_constant(1.0)
WEIGHTS = b"\1" * 1000


def tar_of(path: Path, files: dict[str, bytes], *, compress: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def zip_of(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def unpacked(work: Path, archive: Path) -> Path:
    dest = work / "version"
    dest.mkdir()
    unpack(archive, dest, where="test://")
    return dest


@pytest.mark.parametrize(
    ("name", "expected"),
    [("m.tar.gz", True), ("M.TGZ", True), ("m.tar", True), ("m.zip", True), ("m.onnx", False)],
)
def test_is_archive(name: str, expected: bool) -> None:
    assert is_archive(name) is expected


@pytest.mark.parametrize(
    ("build", "files"),
    [
        (tar_of, {"model.onnx": MODEL, "weights.bin": WEIGHTS}),
        (tar_of, {"./model.onnx": MODEL, "./weights.bin": WEIGHTS}),  # tar -C dir .
        (tar_of, {"iris/iris.onnx": MODEL, "iris/weights.bin": WEIGHTS}),  # tar czf x iris/
        (zip_of, {"model.onnx": MODEL, "weights.bin": WEIGHTS}),
        (zip_of, {"iris/": b"", "iris/model.onnx": MODEL, "iris/weights.bin": WEIGHTS}),
    ],
    ids=["tar.gz", "dot-prefixed", "one-folder-renamed", "zip", "zip-folder"],
)
def test_layouts_unpack_to_model_onnx_and_its_data(
    tmp_path: Path, build: Callable[[Path, dict[str, bytes]], Path], files: dict[str, bytes]
) -> None:
    suffix = ".zip" if build is zip_of else ".tar.gz"
    dest = unpacked(tmp_path, build(tmp_path / f"m{suffix}", files))
    assert sorted(p.name for p in dest.iterdir()) == ["model.onnx", "weights.bin"]
    assert (dest / "model.onnx").read_bytes() == MODEL
    assert (dest / "weights.bin").read_bytes() == WEIGHTS


def test_plain_tar(tmp_path: Path) -> None:
    dest = unpacked(tmp_path, tar_of(tmp_path / "m.tar", {"model.onnx": MODEL}, compress=False))
    assert (dest / "model.onnx").read_bytes() == MODEL


def evil_tar(path: Path, kind: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("model.onnx")
        info.size = len(MODEL)
        tar.addfile(info, io.BytesIO(MODEL))
        bad = tarfile.TarInfo({"parent": "../evil", "absolute": "/tmp/evil"}.get(kind, "evil"))
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, "../../etc/passwd"
        elif kind == "fifo":
            bad.type = tarfile.FIFOTYPE
        elif kind == "device":
            bad.type, bad.devmajor, bad.devminor = tarfile.CHRTYPE, 1, 3
        else:
            bad.size = 4
        tar.addfile(bad, io.BytesIO(b"evil") if bad.isfile() else None)
    return path


def evil_zip(path: Path, kind: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.onnx", MODEL)
        if kind == "symlink":
            info = zipfile.ZipInfo("evil")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        else:
            zf.writestr({"parent": "../evil", "absolute": "/tmp/evil"}[kind], b"evil")
    return path


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (evil_tar, "parent"),
        (evil_tar, "absolute"),
        (evil_tar, "symlink"),
        (evil_tar, "hardlink"),
        (evil_tar, "fifo"),
        (evil_tar, "device"),
        (evil_zip, "parent"),
        (evil_zip, "absolute"),
        (evil_zip, "symlink"),
    ],
)
def test_escapes_refuse_the_whole_archive_before_writing(
    tmp_path: Path, build: Callable[[Path, str], Path], kind: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = build(work / ("m.zip" if build is evil_zip else "m.tar.gz"), kind)
    with pytest.raises(UnsafePathError, match="refusing"):
        unpacked(work, archive)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written == sorted(
        ["work", f"work/{archive.name}", "work/version", "work/version/.unpacked"]
    )
    assert not Path("/tmp/evil").exists()


@pytest.mark.parametrize(
    "files",
    [{"README": b"no model"}, {"a.onnx": MODEL, "b.onnx": MODEL}],
    ids=["no-model", "two-models"],
)
def test_archive_without_one_model_says_what_it_found(
    tmp_path: Path, files: dict[str, bytes]
) -> None:
    with pytest.raises(StorageError, match=r"model.onnx, or exactly one .onnx file") as caught:
        unpacked(tmp_path, tar_of(tmp_path / "m.tgz", files))
    assert caught.value.reason == "NotFound"


def test_garbage_is_an_invalid_archive(tmp_path: Path) -> None:
    (tmp_path / "m.tar.gz").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(StorageError, match="not a readable tar archive") as caught:
        unpacked(tmp_path, tmp_path / "m.tar.gz")
    assert caught.value.reason == "InvalidArchive"


def test_an_archive_larger_than_the_free_space_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tar_of(tmp_path / "m.tgz", {"model.onnx": MODEL, "weights.bin": WEIGHTS})
    small = shutil._ntuple_diskusage(10**9, 10**9 - 100, 100)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: small)
    with pytest.raises(StorageError, match="100 are free"):
        unpacked(tmp_path, archive)
    assert list((tmp_path / "version" / ".unpacked").iterdir()) == []
