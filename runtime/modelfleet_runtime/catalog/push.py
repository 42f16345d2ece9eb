"""Push a model as the next version of a repository, list the versions, show one.

A push first loads the file in ONNX Runtime (a file that does not load is refused before
anything is written), then claims a version number with one conditional write of
``N/.modelfleet-push`` (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``, ``O_EXCL`` on
a file system): of two concurrent pushes that picked the same N, one gets N and the other
moves on to N+1, so each ends as a whole version of its own. The files go up next, the
manifest last (``storage/manifest.py``): until it lands, the runtime does not serve the
version. ``oci://`` references are pushed as an OCI image (``storage/oci.py``) instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import Settings
from ..models.onnx import ModelLoadError, OnnxModel
from ..schemes import scheme_of
from ..storage import NotFoundError, StorageError, WritableStore, open_writable
from ..storage.base import ObjectStore, RemoteFile
from ..storage.manifest import (
    CLAIM_FILE,
    MANIFEST_FILE,
    FileDigest,
    Manifest,
    Signature,
    Tensor,
    digest_of,
)
from ..storage.paths import check_relative
from ..storage.versions import MODEL_FILE, version_files

log = logging.getLogger(__name__)

MAX_CLAIMS = 100
"""How many version numbers one push tries before giving up (each taken by another push)."""


class PushError(Exception):
    """The model or the destination is not fit for a push; the message says why."""


@dataclass(frozen=True)
class LocalModel:
    """A model file on disk, loaded once: its signature and the files a push uploads."""

    path: Path
    signature: Signature
    files: dict[str, Path]
    """Name in the version folder -> local path: ``model.onnx`` and its external data."""

    @classmethod
    def open(cls, path: Path, settings: Settings) -> LocalModel:
        if not path.is_file():
            raise PushError(f"{path}: no such file")
        try:
            loaded = OnnxModel.load(path.stem, 1, path, settings)
        except ModelLoadError as exc:
            raise PushError(f"{path}: not pushed: {exc}") from None
        signature = Signature(
            inputs=[Tensor.of(spec) for spec in loaded.inputs.values()],
            outputs=[Tensor.of(spec) for spec in loaded.outputs.values()],
        )
        files = {MODEL_FILE: path} | {
            location: path.parent / location for location in external_data(path)
        }
        return cls(path, signature, files)

    def digests(self) -> dict[str, FileDigest]:
        return {name: digest_of(local) for name, local in sorted(self.files.items())}


def external_data(model: Path) -> list[str]:
    """The external-data files ``model`` references (relative paths), read with the ``onnx``
    package: ONNX Runtime loads them but does not say which they are."""
    try:
        import onnx
    except ImportError:
        raise PushError(
            "modelfleet models push needs the onnx package to find a model's external-data "
            "files: pip install 'modelfleet[registry]'"
        ) from None
    proto = onnx.load(str(model), load_external_data=False)
    found: set[str] = set()
    for tensor in _tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            location = entries.get("location", "")
            check_relative(location, where=str(model))
            found.add(location)
    return sorted(found)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of ``graph`` that may hold data: initializers and constant attributes,
    subgraphs (If, Loop, Scan) included."""
    yield from graph.initializer
    yield from (sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


@dataclass(frozen=True)
class Pushed:
    reference: str
    """Where the version is: ``s3://models/iris/3`` or ``oci://host/repo@sha256:...``."""
    manifest: Manifest


def push(
    model: LocalModel,
    uri: str,
    settings: Settings,
    *,
    version: int | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Pushed:
    """Upload ``model`` as a new version of the repository ``uri`` (never over an old one)."""
    digests = model.digests()
    if scheme_of(uri).names_image:
        return _push_oci(model, digests, uri, settings, now())
    store = open_writable(uri, settings)
    number = _claim(store, version)
    for name, local in sorted(model.files.items(), key=lambda item: item[0] == MODEL_FILE):
        store.upload(f"{number}/{name}", local)
    manifest = Manifest(version=number, pushed_at=now(), files=digests, signature=model.signature)
    if not store.create(f"{number}/{MANIFEST_FILE}", manifest.to_json()):
        raise PushError(
            f"{store.location}/{number}: a manifest appeared while this push held the version "
            "(written by hand?); this push's files are there, its manifest is not"
        )
    return Pushed(f"{store.location.rstrip('/')}/{number}", manifest)


def _claim(store: WritableStore, version: int | None) -> int:
    """Take a version number: ``version`` or the next free one after the newest."""
    try:
        taken = set(version_files(store.list(""), where=store.location))
    except NotFoundError:  # a folder not made yet: the first push makes it
        taken = set()
    number = version if version is not None else max(taken, default=0) + 1
    claim = json.dumps(
        {"pushId": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid()}
    ).encode()
    for _ in range(MAX_CLAIMS):
        if number not in taken and store.create(f"{number}/{CLAIM_FILE}", claim):
            return number
        if version is not None:
            raise PushError(
                f"{store.location}/{version} exists; versions are never overwritten "
                "(push without --version to take the next number)"
            )
        number += 1
    raise PushError(f"{store.location}: {MAX_CLAIMS} version numbers in a row were taken")


def _push_oci(
    model: LocalModel, digests: dict[str, FileDigest], uri: str, settings: Settings, at: datetime
) -> Pushed:
    from ..storage import oci

    manifest = Manifest(version=1, pushed_at=at, files=digests, signature=model.signature)
    with tempfile.TemporaryDirectory(prefix="modelfleet-push-") as tmp:
        written = Path(tmp) / MANIFEST_FILE
        written.write_bytes(manifest.to_json())
        reference = oci.push(uri, model.files | {MANIFEST_FILE: written}, settings)
    return Pushed(reference, manifest)


# --- Reading a repository back ---------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    number: int
    state: str
    """``pushed`` (its manifest is there), ``pushing`` (claimed, no manifest yet) or
    ``unmanaged`` (files put there without a push)."""
    size: int
    manifest: Manifest | None


def versions(uri: str, settings: Settings) -> list[VersionInfo]:
    """Every version folder of the repository ``uri``, oldest first, with its manifest."""
    store = open_writable(uri, settings)
    found = []
    with tempfile.TemporaryDirectory(prefix="modelfleet-list-") as tmp:
        for number, files in version_files(store.list(""), where=store.location).items():
            found.append(_version_info(store, number, files, Path(tmp)))
    return found


def _version_info(
    store: ObjectStore, number: int, files: list[RemoteFile], tmp: Path
) -> VersionInfo:
    names = {f.path for f in files}
    size = sum(f.size for f in files if f.path not in (MANIFEST_FILE, CLAIM_FILE))
    if MANIFEST_FILE not in names:
        return VersionInfo(number, "pushing" if CLAIM_FILE in names else "unmanaged", size, None)
    local = tmp / f"{number}.json"
    store.download(f"{number}/{MANIFEST_FILE}", local, offset=0, length=None, progress=_ignore)
    where = f"{store.location}/{number}"
    return VersionInfo(number, "pushed", size, Manifest.parse(local.read_bytes(), where=where))


def _ignore(_nbytes: int) -> None:
    pass


__all__ = [
    "LocalModel",
    "PushError",
    "Pushed",
    "StorageError",
    "VersionInfo",
    "push",
    "versions",
]
