"""Decide, without writing, whether a live child already matches what we would apply.

Called by ``reconcile.py`` before every server-side apply, so that a converged resource costs
reads only and zero writes (RELIABILITY.md O1). Two checks, both needed:

* a hash of the desired manifest, stamped on the child as an annotation when it is applied.
  It changes when *we* change what we want, including when we drop a field: a subset check
  alone would call a child that still carries a field we no longer render "converged";
* "desired is a subset of live": every field we set has the value we set. It catches drift
  (someone edited the image, deleted a port) while ignoring every field the server or other
  controllers add (defaults, ``status``, ``spec.replicas`` set by an autoscaler, extra list
  items appended by others). Resource quantities compare by value: the API server stores
  ``cpu: 1000m`` as ``1`` and ``memory: 1024Mi`` as ``1Gi``, which is no drift.

Pure: no kopf, no client, no clock.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from modelfleet_operator.kinds import GROUP
from modelfleet_runtime.quantities import quantity

HASH_ANNOTATION = f"{GROUP}/applied-hash"
QUANTITY_MAPS = frozenset({"limits", "requests"})
"""Mappings whose values are all quantities (a container's ``resources``)."""
QUANTITY_KEYS = frozenset({"sizeLimit", "averageValue"})
"""Fields holding one quantity (an emptyDir's ``sizeLimit``, an HPA metric target)."""


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """A short, stable hash of ``manifest`` (without its own hash annotation)."""
    stripped = copy.deepcopy(dict(manifest))
    annotations = stripped.get("metadata", {}).get("annotations") or {}
    annotations.pop(HASH_ANNOTATION, None)
    canonical = json.dumps(stripped, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stamp(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` carrying its hash annotation, ready to apply."""
    stamped = copy.deepcopy(manifest)
    digest = manifest_hash(stamped)
    stamped.setdefault("metadata", {}).setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return stamped


def same_quantity(desired: Any, live: Any) -> bool:
    """Equal, or two spellings of one quantity."""
    if desired == live:
        return True
    value = quantity(desired)
    return value is not None and value == quantity(live)


def is_subset(desired: Any, live: Any, key: str | None = None) -> bool:
    """Whether every field set in ``desired`` has the same value in ``live``.

    Mappings: each desired key must be present with a subset value. Lists: live must hold at
    least as many items, and each desired item must be a subset of the live item at the same
    index (items appended by others are not ours to remove). Scalars: equal; quantities (by
    ``key``, the field they sit under): the same value.
    """
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        if key in QUANTITY_MAPS:
            return all(k in live and same_quantity(v, live[k]) for k, v in desired.items())
        return all(k in live and is_subset(v, live[k], k) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) < len(desired):
            return False
        return all(is_subset(item, other) for item, other in zip(desired, live, strict=False))
    if key in QUANTITY_KEYS:
        return same_quantity(desired, live)
    return bool(desired == live)


def is_converged(stamped: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """Whether applying ``stamped`` (the output of :func:`stamp`) onto ``live`` would be a no-op."""
    if live is None:
        return False
    return is_subset(stamped, live)
