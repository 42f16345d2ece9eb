"""The model cache volume (``spec.modelfleet.modelCache``): what a predictor pod mounts at
``/var/cache/modelfleet`` and the runtime settings that point the runtime at it.

On by default for every model the runtime downloads over the network (s3://, gs://, https://,
oci:// pulled by the runtime): an emptyDir per pod, which outlives a container restart, so a
restarted runtime finds its versions there and downloads nothing; or the PersistentVolumeClaim
named by ``claimName``, shared by every pod that mounts it and kept across rollouts. Never a
hostPath (Pod Security "restricted" forbids it). A model read from a mounted claim
(``pvc://``), a file in the image (``file://``) or an image volume is not downloaded, so it
gets no cache. Called by ``render.deployment`` (volume and mount) and ``render.runtime_env``
(settings, by the runtime's field names); pure.
"""

from __future__ import annotations

from typing import Any

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import ParsedService
from modelfleet_operator.render import delivery
from modelfleet_operator.render.plan import Track
from modelfleet_runtime.schemes import scheme_of

CACHE_DIR = "/var/cache/modelfleet"
"""Where the cache is mounted, and the runtime's ``cache_dir``."""
CACHE_VOLUME = "model-cache"


def cached(svc: ParsedService, track: Track, config: OperatorConfig) -> bool:
    """Whether the track's pods mount a model cache: it is enabled and the runtime downloads
    the model over the network."""
    if not svc.spec.modelfleet.model_cache.enabled:
        return False
    networked = scheme_of(track.storage_uri).netloc in ("bucket", "host")
    return networked and delivery.delivery(svc, track, config) != "ImageVolume"


def volumes(svc: ParsedService, track: Track, config: OperatorConfig) -> list[dict[str, Any]]:
    """The cache volume (none when the track has no cache): the claim, else an emptyDir."""
    if not cached(svc, track, config):
        return []
    spec = svc.spec.modelfleet.model_cache
    if spec.claim_name:
        return [{"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": spec.claim_name}}]
    empty_dir = {"sizeLimit": spec.size_limit} if spec.size_limit else {}
    return [{"name": CACHE_VOLUME, "emptyDir": empty_dir}]


def mounts(svc: ParsedService, track: Track, config: OperatorConfig) -> list[dict[str, Any]]:
    """The cache's mount, read-write (the runtime writes versions into it)."""
    if not cached(svc, track, config):
        return []
    return [{"name": CACHE_VOLUME, "mountPath": CACHE_DIR}]


def settings(svc: ParsedService, track: Track, config: OperatorConfig) -> dict[str, Any]:
    """The runtime's ``cache_dir`` and ``cache_size_limit`` (by field name), or nothing."""
    if not cached(svc, track, config):
        return {}
    out: dict[str, Any] = {"cache_dir": CACHE_DIR}
    size_limit = svc.spec.modelfleet.model_cache.size_limit
    if size_limit:
        out["cache_size_limit"] = size_limit
    return out
