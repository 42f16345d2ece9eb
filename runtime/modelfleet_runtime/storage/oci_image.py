"""The model as an OCI image: read a pulled manifest and layer, and build one to push.

``oci.py`` calls these; they do no network I/O. A model image is a valid OCI image, so that a
container runtime can also mount it as an image volume: an image manifest, a config
(``{"architecture": "amd64", "os": "linux", "rootfs": {...}, "config": {}}``) and ONE layer, a
tar (gzip-compressed when pushed by ModelFleet) holding ``model.onnx``, its external-data files
and ``modelfleet.json`` at its root. Pushed layers are reproducible: sorted members, regular
files of mode 0644 owned by 0:0 with mtime 0, and a gzip header without a name or a time.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from .base import IntegrityError, StorageError, UnsafePathError
from .paths import check_relative

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
GZIP_LAYERS = (LAYER_GZIP, DOCKER_LAYER)
TITLE = "org.opencontainers.image.title"
MODEL_ANNOTATION = "dev.modelfleet.model"
_DIGEST_HEX = frozenset("0123456789abcdef")
_CHUNK = 1024 * 1024
_GZIP_LEVEL = 1
"""Weights are close to incompressible; the fastest level costs a push least time."""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class Image:
    """An image manifest as the runtime uses it: its digest, config and one layer."""

    digest: str
    config: Descriptor
    layer: Descriptor


def _invalid(where: str, what: str) -> StorageError:
    return StorageError(f"{where}: not a model image: {what}", reason="InvalidImage")


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise _invalid(where, "a descriptor is not an object")
    digest, size, media_type = raw.get("digest"), raw.get("size"), raw.get("mediaType")
    if not (isinstance(digest, str) and digest.startswith("sha256:")):
        raise _invalid(where, f"digest {digest!r} is not sha256 (the only algorithm supported)")
    if len(digest) != 71 or not set(digest[7:]) <= _DIGEST_HEX:
        raise _invalid(where, f"digest {digest!r} is not sha256: and 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(where, f"descriptor {digest} has no valid size")
    return Descriptor(media_type if isinstance(media_type, str) else "", digest, size)


def _document(data: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise _invalid(where, "the manifest is not a JSON object")
    return document


def is_index(data: bytes, media_type: str, where: str) -> bool:
    """Whether a manifest is an index (a list of per-platform manifests)."""
    kind = _document(data, where).get("mediaType") or media_type
    return kind in (OCI_INDEX, DOCKER_LIST) or "manifests" in _document(data, where)


def pick_manifest(data: bytes, where: str) -> Descriptor:
    """The index entry to pull: linux/amd64, else the index's only entry."""
    entries = _document(data, where).get("manifests")
    if not isinstance(entries, list) or not entries:
        raise _invalid(where, "the index lists no manifests")
    if len(entries) == 1:
        return _descriptor(entries[0], where)
    for entry in entries:
        platform = entry.get("platform") if isinstance(entry, dict) else None
        if isinstance(platform, dict) and (platform.get("os"), platform.get("architecture")) == (
            "linux",
            "amd64",
        ):
            return _descriptor(entry, where)
    raise _invalid(where, f"the index has {len(entries)} entries and none for linux/amd64")


def parse_image(data: bytes, digest: str, where: str) -> Image:
    """Check an image manifest and take out its config and its one layer."""
    document = _document(data, where)
    kind = document.get("mediaType", OCI_MANIFEST)
    if document.get("schemaVersion") != 2 or kind not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise _invalid(where, f"unsupported manifest (schemaVersion 2 {OCI_MANIFEST} expected)")
    config = _descriptor(document.get("config"), where)
    layers = document.get("layers")
    if not isinstance(layers, list) or len(layers) != 1:
        count = len(layers) if isinstance(layers, list) else 0
        raise _invalid(where, f"{count} layers; a model image has exactly one")
    layer = _descriptor(layers[0], where)
    if layer.media_type not in (*GZIP_LAYERS, LAYER_TAR):
        raise _invalid(
            where, f"layer type {layer.media_type!r} (supported: tar and tar+gzip layers)"
        )
    return Image(digest, config, layer)


def diff_id(config: bytes, where: str) -> str | None:
    """The uncompressed layer's digest the config names (``rootfs.diff_ids[0]``), if any."""
    try:
        document = json.loads(config)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise _invalid(where, "the image config is not a JSON object")
    rootfs = document.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], str):
        return ids[0]
    return None


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _HashingReader:
    """Reads through ``raw`` and hashes every byte read."""

    def __init__(self, raw: _Readable) -> None:
        self._raw = raw
        self.hasher = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.hasher.update(data)
        return data


def check_layer(path: Path, media_type: str, expected: str | None, where: str) -> None:
    """Read the layer once through: refuse whiteout members (``.wh.*``: a layer that deletes
    files belongs to a layered image, not a model), and check the uncompressed bytes against
    the config's diff_id. Links, ``..`` and the rest are refused later, by archive.py."""
    with path.open("rb") as raw:
        stream: _Readable = gzip.GzipFile(fileobj=raw) if media_type in GZIP_LAYERS else raw
        reader = _HashingReader(stream)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    if member.name.rstrip("/").rsplit("/", 1)[-1].startswith(".wh."):
                        raise UnsafePathError(
                            f"{where}: refusing layer member {member.name!r}: a whiteout"
                        )
            while reader.read(_CHUNK):
                pass
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise StorageError(
                f"{where}: the layer is not a readable tar ({type(exc).__name__})",
                reason="InvalidArchive",
            ) from None
    got = "sha256:" + reader.hasher.hexdigest()
    if expected is not None and got != expected:
        raise IntegrityError(
            f"{where}: the uncompressed layer has digest {got}, the config says {expected}"
        )


class _HashingWriter:
    """Writes through to ``raw``, hashing and counting every byte."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def build_layer(files: Mapping[str, Path], dest: Path, *, where: str) -> tuple[Descriptor, str]:
    """Write the reproducible tar+gzip layer of ``files`` (name in the image -> local file) to
    ``dest``; return its descriptor and diff_id."""
    for name in files:
        check_relative(name, where=where)
    with dest.open("wb") as out:
        compressed = _HashingWriter(out)
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=_GZIP_LEVEL
        ) as gz:
            plain = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for name in sorted(files):
                    _add(tar, name, files[name])
    return Descriptor(LAYER_GZIP, compressed.digest, compressed.size), plain.digest


def _add(tar: tarfile.TarFile, name: str, source: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = source.stat().st_size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with source.open("rb") as body:
        tar.addfile(info, body)


def config_bytes(layer_diff_id: str) -> bytes:
    """The image config for one layer (compact JSON, sorted keys: reproducible)."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_diff_id]},
        "config": {},
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def manifest_bytes(config: Descriptor, layer: Descriptor, title: str) -> bytes:
    """The image manifest; ``title`` is the repository's last segment."""

    def descriptor(d: Descriptor) -> dict[str, Any]:
        return {"mediaType": d.media_type, "digest": d.digest, "size": d.size}

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config),
        "layers": [descriptor(layer)],
        "annotations": {TITLE: title, MODEL_ANNOTATION: "onnx"},
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
