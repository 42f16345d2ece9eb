"""The predictor Deployment: runtime image, probes, rollout shape and Pod Security restricted.

Called by ``render.render`` once per track (stable, canary); pure.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from modelfleet_operator import labels
from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import ParsedService
from modelfleet_operator.render import cache, delivery, tls
from modelfleet_operator.render.plan import Track
from modelfleet_operator.render.runtime_env import (
    AUTH_SECRET_DIR,
    GRPC_PORT,
    MODEL_DIR,
    PORT,
    PVC_MOUNT,
    STORAGE_SECRET_DIR,
    container_env,
    resources_for,
    runtime_grace_period,
)
from modelfleet_runtime.schemes import scheme_of

RUN_AS = 10001
CONTAINER = "runtime"
STARTUP_PERIOD = 2
"""Seconds between startup probes (their failureThreshold is the startup timeout over it)."""


def image_for(svc: ParsedService, config: OperatorConfig) -> str:
    """spec.modelfleet.runtime.image, else the operator's image with runtimeVersion as tag."""
    runtime = svc.spec.modelfleet.runtime
    if runtime is not None and runtime.image:
        return runtime.image
    version = svc.spec.model.runtime_version
    if not version:
        return config.runtime_image
    repo = config.runtime_image.split("@", 1)[0]
    if repo.rfind(":") > repo.rfind("/"):
        repo = repo[: repo.rfind(":")]
    return f"{repo}:{version}"


def termination_grace_seconds(config: OperatorConfig) -> int:
    """preStop pause + the runtime's drain time + a margin: always above the runtime's grace."""
    grace = math.ceil(runtime_grace_period(config))
    return config.pre_stop_seconds + grace + config.termination_margin_seconds


def deployment(svc: ParsedService, track: Track, config: OperatorConfig) -> dict[str, Any]:
    """A Deployment for one track; ``spec.replicas`` is omitted when an autoscaler owns it."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels.pod_selector(svc.name, track.track)},
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": config.progress_deadline_seconds,
        # Old pods serve until new ones are Ready: never fewer than desired.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": tls.secure_pod_template(svc, _pod_template(svc, track, config)),
    }
    if svc.spec.autoscaler is None:
        spec = {"replicas": track.min_replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": track.deployment,
            "namespace": svc.namespace,
            "labels": labels.child_labels(svc.name, track=track.track),
        },
        "spec": spec,
    }


def _pod_template(svc: ParsedService, track: Track, config: OperatorConfig) -> dict[str, Any]:
    pred = svc.spec.predictor
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": termination_grace_seconds(config),
        "containers": [_container(svc, track, config)],
        "volumes": _volumes(svc, track, config),
    }
    if pred.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s.name} for s in pred.image_pull_secrets]
    if pred.service_account_name:
        pod["serviceAccountName"] = pred.service_account_name
    else:  # the runtime never calls the Kubernetes API
        pod["automountServiceAccountToken"] = False
    for key, value in (
        ("nodeSelector", pred.node_selector),
        ("tolerations", pred.tolerations),
        ("affinity", pred.affinity),
    ):
        if value:
            pod[key] = value
    return {
        "metadata": {
            "labels": labels.child_labels(svc.name, track=track.track),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod,
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def startup_probe(svc: ParsedService, config: OperatorConfig) -> dict[str, Any]:
    """Ready (a version downloaded, loaded and warmed up) within the startup timeout, or the
    kubelet restarts the container. Until it passes, liveness and readiness are not probed:
    a long download or a session creation that holds the GIL cannot get the pod killed.
    Probed every STARTUP_PERIOD seconds, so a pod is seen ready at most that late."""
    timeout = svc.spec.modelfleet.startup_timeout_seconds or config.startup_timeout_seconds
    return _probe("/v2/health/ready", STARTUP_PERIOD, math.ceil(timeout / STARTUP_PERIOD))


def _container(svc: ParsedService, track: Track, config: OperatorConfig) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": image_for(svc, config),
        "imagePullPolicy": config.image_pull_policy,
        "command": ["modelfleet", "serve"],
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "env": container_env(svc, track, config),
        "resources": resources_for(svc, config),
        "readinessProbe": _probe("/v2/health/ready", 5, 3),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "startupProbe": startup_probe(svc, config),
        "lifecycle": {"preStop": {"sleep": {"seconds": config.pre_stop_seconds}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": _mounts(svc, track, config),
    }


def _mounts(svc: ParsedService, track: Track, config: OperatorConfig) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "models", "mountPath": MODEL_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    mounts += cache.mounts(svc, track, config)
    if _mounts_claim(track):
        mounts.append(_read_only("model-pvc", PVC_MOUNT))
    if _key_file_secret(svc, track):
        mounts.append(_read_only("storage-credentials", STORAGE_SECRET_DIR))
    if svc.spec.modelfleet.auth is not None:
        mounts.append(_read_only("auth-tokens", AUTH_SECRET_DIR))
    if delivery.delivery(svc, track, config) == "ImageVolume":
        mounts.append(_read_only(delivery.IMAGE_VOLUME, delivery.IMAGE_MOUNT))
    if delivery.registry_secret(svc, track, config) is not None:
        mounts.append(_read_only(delivery.REGISTRY_VOLUME, delivery.REGISTRY_SECRET_DIR))
    return mounts


def _read_only(volume: str, path: str) -> dict[str, Any]:
    return {"name": volume, "mountPath": path, "readOnly": True}


def _volumes(svc: ParsedService, track: Track, config: OperatorConfig) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "models", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    volumes += cache.volumes(svc, track, config)
    if _mounts_claim(track):
        claim = urlsplit(track.storage_uri).netloc
        volumes.append(
            {"name": "model-pvc", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    storage = svc.spec.modelfleet.storage
    if storage is not None and storage.secret_ref is not None and _key_file_secret(svc, track):
        volumes.append(
            _secret_volume(
                "storage-credentials", storage.secret_ref.name, storage.gcs_credentials_key
            )
        )
    auth = svc.spec.modelfleet.auth
    if auth is not None:
        volumes.append(_secret_volume("auth-tokens", auth.secret_ref.name, auth.key))
    if delivery.delivery(svc, track, config) == "ImageVolume":
        volumes.append(delivery.image_volume(track))
    registry = delivery.registry_secret(svc, track, config)
    if registry is not None:
        volumes.append(
            _secret_volume(
                delivery.REGISTRY_VOLUME,
                registry,
                delivery.REGISTRY_SECRET_KEY,
                delivery.REGISTRY_CONFIG_FILE,
            )
        )
    return volumes


def _mounts_claim(track: Track) -> bool:
    """Whether the track's model is on a PersistentVolumeClaim that the pod mounts (pvc://)."""
    return scheme_of(track.storage_uri).mount == "claim"


def _key_file_secret(svc: ParsedService, track: Track) -> bool:
    """Whether the storage Secret is mounted as a key file (gs://'s service-account key)."""
    storage = svc.spec.modelfleet.storage
    credentials = scheme_of(track.storage_uri).credentials
    return bool(storage and storage.secret_ref and credentials == "key-file")


def _secret_volume(volume: str, secret: str, key: str, path: str | None = None) -> dict[str, Any]:
    """One key of a Secret mounted as a file (named ``path``, default the key), read-only to
    the pod's user only."""
    return {
        "name": volume,
        "secret": {
            "secretName": secret,
            "items": [{"key": key, "path": path or key}],
            "defaultMode": 0o440,
        },
    }
