"""The version policy: which of the versions storage holds a server loads.

Called by the model repository on every sync, and by ``prefetch.py`` before the server has
started (so it imports nothing heavy).
"""

from __future__ import annotations

from collections.abc import Iterable

from modelfleet_runtime.config import Settings


def select_versions(available: Iterable[int], settings: Settings) -> set[int]:
    """The versions the policy wants, out of those storage holds."""
    versions = sorted(set(available), reverse=True)
    if settings.version_policy == "all":
        return set(versions)
    if settings.version_policy == "specific":
        return set(settings.versions)
    return set(versions[: settings.num_versions])
