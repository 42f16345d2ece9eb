"""A listing's objects grouped into model versions: numbered version folders (``1/model.onnx``
and the files beside it), or one flat version (a folder holding ``model.onnx`` at its top, as a
model image mounted as a volume does). Pure functions over ``ObjectInfo`` lists: ``layout.py``
lists and fetches, ``catalog/push.py`` picks the next number; both group the same way here.
"""

from __future__ import annotations

import logging

from . import manifest
from .base import ObjectInfo, RemoteFile, RemoteVersion
from .paths import check_relative, version_number

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"


def version_files(objects: list[ObjectInfo], *, where: str) -> dict[int, list[RemoteFile]]:
    """The listed objects of each numbered version folder, by number. Any unsafe key refuses
    the whole listing: a repository holding one is treated as tampered with, not
    half-trusted."""
    files: dict[int, list[RemoteFile]] = {}
    for obj in objects:
        if obj.key.endswith("/") and obj.size == 0:
            continue  # a folder marker, as consoles create
        check_relative(obj.key, where=where)
        folder, _, rest = obj.key.partition("/")
        number = version_number(folder, where=where) if rest else None
        if number is not None:
            files.setdefault(number, []).append(RemoteFile(rest, obj.size, obj.etag))
    return dict(sorted(files.items()))


def group_versions(objects: list[ObjectInfo], *, where: str) -> dict[int, RemoteVersion]:
    """Group listed objects into versions that hold a model.onnx."""
    versions = {}
    for number, files in version_files(objects, where=where).items():
        if not any(f.path == MODEL_FILE for f in files):
            log.warning("%s: version %d has no %s yet; skipping it", where, number, MODEL_FILE)
            continue
        served = tuple(f for f in files if f.path != manifest.CLAIM_FILE)
        versions[number] = RemoteVersion(number, served)
    return versions


def flat_version(objects: list[ObjectInfo], *, where: str) -> RemoteVersion | None:
    """Version 1 made of every file, when the folder's top level holds model.onnx and there
    is no numbered version folder: how a model image mounted as a volume looks."""
    if not any(obj.key == MODEL_FILE for obj in objects) or version_files(objects, where=where):
        return None
    files = (RemoteFile(o.key, o.size, o.etag) for o in objects if not o.key.endswith("/"))
    return RemoteVersion(1, tuple(files))
