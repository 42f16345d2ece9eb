"""Path containment and version names: the pure checks behind ``layout.py``.

Every key that storage lists is checked here before it can become a local path, so a key like
``1/../../etc/x`` or ``/abs`` can never write outside the model folder (RELIABILITY S10).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .base import UnsafePathError

log = logging.getLogger(__name__)

_VERSION = re.compile(r"[1-9][0-9]{0,17}")
# Names someone meant as a version but wrote wrongly ("01", "0", "-1", "1.5", " 2", "v2"):
# they are refused loudly, while plainly non-numeric folders ("docs") are ignored quietly.
_VERSION_LIKE = re.compile(r"\s*[vV+-]?[0-9].*", re.DOTALL)
_DRIVE = re.compile(r"[A-Za-z]:")


def check_relative(path: str, *, where: str) -> str:
    """Return ``path`` if it is a safe relative posix path, else raise UnsafePathError.

    Refused: empty, absolute, backslashes, NUL, ``.`` or ``..`` segments, empty segments
    (``a//b``), and Windows drive letters. ``where`` names the store for the message.
    """
    reason = _unsafe_reason(path)
    if reason:
        raise UnsafePathError(f"{where}: refusing key {path!r}: {reason}")
    return path


def _unsafe_reason(path: str) -> str | None:
    if not path:
        return "empty path"
    if path.startswith("/"):
        return "absolute path"
    if "\\" in path or "\0" in path:
        return "backslash or NUL in the path"
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return "empty, '.' or '..' path segment"
    if _DRIVE.match(segments[0]):
        return "drive letter"
    return None


def contained(root: Path, relative: str) -> Path:
    """``root / relative``, after checking that it resolves inside ``root`` (defence in
    depth behind ``check_relative``: a symlink planted in ``root`` cannot redirect a write)."""
    target = root / relative
    resolved_root = root.resolve()
    if not target.resolve().is_relative_to(resolved_root) or target.resolve() == resolved_root:
        raise UnsafePathError(f"refusing to write {relative!r}: it resolves outside {root}")
    return target


def version_number(name: str, *, where: str) -> int | None:
    """The version a folder name stands for, or None if it is no version folder.

    Only plain positive integers count. Names that look like an attempt at a version number
    but are not plain (``0``, ``01``, ``1.5``, ``-2``) are skipped with a warning, so that
    ``01`` and ``1`` can never both claim version 1.
    """
    if _VERSION.fullmatch(name):
        return int(name)
    if _VERSION_LIKE.fullmatch(name):
        log.warning(
            "%s: ignoring folder %r: version folders must be plain positive integers", where, name
        )
    return None
