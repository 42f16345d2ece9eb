"""The manifest of a pushed version, ``modelfleet.json``, and its verification.

``push.py`` writes it last, after every file of the version, so its presence says the version
is whole. The runtime verifies a downloaded version against it before loading (called from
``storage/layout.py``): every listed file present with its size and sha256, no file that the
manifest does not list, and the version number it was pushed as.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from .base import IntegrityError

if TYPE_CHECKING:  # protocol.py imports numpy, which the storage code never needs
    from ..protocol import TensorSpec

MANIFEST_FILE = "modelfleet.json"
CLAIM_FILE = ".modelfleet-push"
"""Created (conditionally) before a push uploads anything: it claims the version number, so
two concurrent pushes never write into one folder, and it marks the version as in progress
until the manifest lands. Never downloaded."""
SCHEMA: Final = "modelfleet.dev/model-manifest/v1"
_CHUNK = 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class FileDigest(_Model):
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Tensor(_Model):
    """An input or output as the Open Inference Protocol's metadata states it (-1: dynamic)."""

    name: str
    datatype: str
    shape: list[int]

    @classmethod
    def of(cls, spec: TensorSpec) -> Tensor:
        return cls.model_validate(spec.wire())

    def __str__(self) -> str:
        dims = ",".join("?" if d < 0 else str(d) for d in self.shape)
        return f"{self.name} {self.datatype}[{dims}]"


class Signature(_Model):
    inputs: list[Tensor]
    outputs: list[Tensor]

    def __str__(self) -> str:
        return f"{', '.join(map(str, self.inputs))} -> {', '.join(map(str, self.outputs))}"


class Manifest(_Model):
    """``modelfleet.json``: what a pushed version holds."""

    schema_: Literal["modelfleet.dev/model-manifest/v1"] = Field(default=SCHEMA, alias="schema")
    version: int = Field(ge=1)
    pushed_at: datetime
    files: dict[str, FileDigest]
    """Every file of the version (``model.onnx`` and external data), relative paths."""
    signature: Signature

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, indent=2).encode() + b"\n"

    @classmethod
    def parse(cls, data: bytes, *, where: str) -> Manifest:
        """The manifest in ``data``; IntegrityError when it is not one."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(map(str, first["loc"])) or "(document)"
            raise IntegrityError(
                f"{where}: {MANIFEST_FILE} is not a valid manifest ({field}: {first['msg']})",
                reason="ManifestInvalid",
            ) from None


def missing(where: str, number: int) -> IntegrityError:
    """The error for a version without a manifest in a repository of pushed versions."""
    return IntegrityError(
        f"{where}: version {number} has no {MANIFEST_FILE} while the repository holds pushed "
        "versions (a push still uploading, or files copied by hand); it is not served until "
        "its manifest is written",
        reason="ManifestMissing",
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def digest_of(path: Path) -> FileDigest:
    return FileDigest(size=path.stat().st_size, sha256=sha256_file(path))


def verify(
    folder: Path, *, number: int, where: str, known: Mapping[str, str] | None = None
) -> Manifest:
    """Check the version downloaded into ``folder`` against its ``modelfleet.json``.

    ``known`` holds the sha256 of files already hashed while they downloaded (by relative
    path); the others are read and hashed here.

    Raises IntegrityError naming the first file that differs; ``reason`` is
    ``ManifestMissing``, ``ManifestInvalid`` or ``IntegrityError`` (bytes differ).
    """
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise missing(where, number)
    manifest = Manifest.parse(path.read_bytes(), where=f"{where} version {number}")
    if manifest.version != number:
        raise IntegrityError(
            f"{where}: version {number}'s {MANIFEST_FILE} was pushed as version "
            f"{manifest.version}; a version folder is not renamed after its push"
        )
    present = set(_files_under(folder)) - {MANIFEST_FILE}
    extra = sorted(present - set(manifest.files))
    if extra:
        raise IntegrityError(
            f"{where}: version {number} holds {extra[0]!r}, which its {MANIFEST_FILE} does not list"
        )
    for name, expected in sorted(manifest.files.items()):
        target = folder / name
        if name not in present:
            raise IntegrityError(
                f"{where}: version {number} lacks {name!r}, listed in its manifest"
            )
        digest = (known or {}).get(name)
        got = (
            digest_of(target)
            if digest is None
            else FileDigest(size=target.stat().st_size, sha256=digest)
        )
        if got != expected:
            what = "size" if got.size != expected.size else "sha256"
            raise IntegrityError(
                f"{where}: version {number} file {name!r} differs from its manifest ({what}: "
                f"{getattr(got, what)}, manifest: {getattr(expected, what)})"
            )
    return manifest


def _files_under(folder: Path) -> list[str]:
    found = []
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            found.append((Path(dirpath) / name).relative_to(folder).as_posix())
    return found
