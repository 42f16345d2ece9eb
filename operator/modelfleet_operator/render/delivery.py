"""How a track's model reaches its pods (``spec.modelfleet.ociDelivery``).

Every scheme but ``oci://`` is downloaded by the runtime. An ``oci://`` model is either pulled
by the runtime too ("Pull": the first image pull secret's ``.dockerconfigjson`` is mounted for
it) or mounted by the kubelet as an image volume ("ImageVolume": ``volumes[].image``, read-only
at ``/mnt/models``, served as version 1; the kubelet pulls it once per node and keeps it in the
node's image store). "Auto" picks ImageVolume when the API server is 1.35 or newer (image
volumes beta and on by default there), which ``config.server_version`` carries as data: the
operator asks ``GET /version`` once at start-up, ``modelfleet render`` takes
``--server-version``. Called by ``render.deployment`` and ``render.runtime_env`` (volumes and
settings), ``discovery`` (to log what Auto means) and ``cli`` (to note an undecided Auto); pure.
"""

from __future__ import annotations

from typing import Any, Literal

from modelfleet_operator.config import OperatorConfig, version_tuple
from modelfleet_operator.oci_ref import parse_oci_uri
from modelfleet_operator.parse import ParsedService
from modelfleet_operator.render.plan import Track
from modelfleet_runtime.schemes import scheme_of

Delivery = Literal["Download", "Pull", "ImageVolume"]
IMAGE_VOLUMES_SINCE = (1, 35)
"""The first Kubernetes version with image volumes on by default (beta in 1.35, GA in 1.36)."""
IMAGE_MOUNT = "/mnt/models"
IMAGE_VOLUME = "model"
REGISTRY_VOLUME = "registry-credentials"
REGISTRY_SECRET_DIR = "/var/run/secrets/modelfleet/registry"
REGISTRY_SECRET_KEY = ".dockerconfigjson"
"""The key of a ``kubernetes.io/dockerconfigjson`` Secret (a Docker config file)."""
REGISTRY_CONFIG_FILE = "config.json"
"""The name it is mounted under, as the runtime's ``registry_config`` file."""


def delivery(svc: ParsedService, track: Track, config: OperatorConfig) -> Delivery:
    """How one track's model arrives: "Download" for every scheme but oci://; for oci://,
    Pull or ImageVolume as asked, with Auto decided by the API server's version (unknown:
    Pull)."""
    if not scheme_of(track.storage_uri).names_image:
        return "Download"
    asked = svc.spec.modelfleet.oci_delivery
    return auto_delivery(config.server_version) if asked == "Auto" else asked


def auto_delivery(server_version: str | None) -> Literal["Pull", "ImageVolume"]:
    """What Auto means on an API server of ``server_version`` (unknown: Pull)."""
    if server_version is not None and version_tuple(server_version) >= IMAGE_VOLUMES_SINCE:
        return "ImageVolume"
    return "Pull"


def auto_undecided(svc: ParsedService, config: OperatorConfig) -> bool:
    """Whether an oci:// model's Auto delivery fell back to Pull for want of a server version
    (``modelfleet render`` says so)."""
    return (
        config.server_version is None
        and svc.spec.modelfleet.oci_delivery == "Auto"
        and any(scheme_of(uri).names_image for uri in svc.spec.storage_uris.values())
    )


def registry_secret(svc: ParsedService, track: Track, config: OperatorConfig) -> str | None:
    """The image pull secret mounted for the runtime's own pulls (Pull mode only): the first."""
    secrets = svc.spec.predictor.image_pull_secrets
    if not secrets or delivery(svc, track, config) != "Pull":
        return None
    return secrets[0].name


def model_settings(svc: ParsedService, track: Track, config: OperatorConfig) -> dict[str, Any]:
    """Runtime settings (by field name) that depend on the delivery: the mounted image's folder
    as the model (ImageVolume), or the mounted registry credentials file (Pull)."""
    mode = delivery(svc, track, config)
    if mode == "ImageVolume":
        return {"model_uri": IMAGE_MOUNT}
    out: dict[str, Any] = {}
    if registry_secret(svc, track, config) is not None:
        out["registry_config"] = f"{REGISTRY_SECRET_DIR}/{REGISTRY_CONFIG_FILE}"
    return out


def image_volume(track: Track) -> dict[str, Any]:
    """The image volume of an oci:// model (ImageVolume mode): the kubelet pulls it."""
    image = parse_oci_uri(track.storage_uri, "storageUri").image
    return {"name": IMAGE_VOLUME, "image": {"reference": image, "pullPolicy": "IfNotPresent"}}
