"""The runtime container's environment, built from the runtime's own settings model.

Every MODELFLEET_* name comes from ``modelfleet_runtime.config.Settings`` (its field names,
prefix and aliases), so the operator and the runtime cannot drift. Called by
``render.deployment``; pure.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlsplit

from pydantic import AliasChoices

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import ParsedService
from modelfleet_operator.render import cache, delivery
from modelfleet_operator.render.plan import Track
from modelfleet_runtime.config import ENV_PREFIX, Settings
from modelfleet_runtime.schemes import scheme_of

MODEL_DIR = "/var/lib/modelfleet/models"
PVC_MOUNT = "/mnt/models"
STORAGE_SECRET_DIR = "/var/run/secrets/modelfleet/storage"
AUTH_SECRET_DIR = "/var/run/secrets/modelfleet/auth"
PORT = 8080
GRPC_PORT = 8081


def env_name(field: str) -> str:
    """The environment variable the runtime reads ``field`` from.

    A field with alias choices is read under the alias names only (pydantic-settings does not
    prefix aliases), so the upper-case alias (e.g. AWS_ENDPOINT_URL) is used.
    """
    info = Settings.model_fields[field]  # KeyError: the runtime has no such setting
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        upper = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
        if upper:
            return upper[-1]
    return ENV_PREFIX + field.upper()


def env_value(value: Any) -> str:
    """A settings value as pydantic-settings parses it: JSON for lists and dicts."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def runtime_grace_period(config: OperatorConfig) -> float:
    """The runtime's SIGTERM grace period in seconds (its default, or the operator's override)."""
    override = config.runtime_defaults.get("grace_period")
    default = Settings.model_fields["grace_period"].default
    return float(override if override is not None else default)


def model_uri(uri: str) -> str:
    """The URI the runtime fetches: ``pvc://claim/path`` becomes the mounted claim's file path."""
    if scheme_of(uri).mount == "claim":
        return f"file://{PVC_MOUNT}{urlsplit(uri).path or '/'}"
    return uri


def settings_for(svc: ParsedService, track: Track, config: OperatorConfig) -> dict[str, Any]:
    """Runtime settings (by field name) for one track's pods, before user overrides."""
    mf = svc.spec.modelfleet
    out: dict[str, Any] = {
        "model_uri": model_uri(track.storage_uri),
        "name": svc.name,
        "version_policy": track.version_policy.policy,
        "model_dir": MODEL_DIR,
        "host": "0.0.0.0",
        "port": PORT,
        "grpc_port": GRPC_PORT,
        "log_format": "json",
    }
    if track.version_policy.policy == "latest":
        out["num_versions"] = track.version_policy.num_versions
    if track.version_policy.policy == "specific":
        out["versions"] = track.version_policy.versions
    if mf.digests:
        out["sha256"] = {k: v.removeprefix("sha256:") for k, v in sorted(mf.digests.items())}
    out.update(_storage_settings(svc, track))
    out.update(delivery.model_settings(svc, track, config))
    out.update(_batching_settings(svc))
    out.update(cache.settings(svc, track, config))
    if mf.auth is not None:
        out["auth_tokens_file"] = f"{AUTH_SECRET_DIR}/{mf.auth.key}"
    if config.allowed_storage_hosts:
        out["allowed_hosts"] = list(config.allowed_storage_hosts)
    threads = _cpu_threads(svc, config)
    if threads:
        out["intra_op_threads"] = threads
    out.update(config.runtime_defaults)
    return out


def _storage_settings(svc: ParsedService, track: Track) -> dict[str, Any]:
    storage = svc.spec.modelfleet.storage
    out: dict[str, Any] = {}
    if storage is None:
        return out
    if storage.endpoint:
        out["s3_endpoint_url"] = storage.endpoint
    if storage.region:
        out["s3_region"] = storage.region
    if storage.addressing_style:
        out["s3_addressing_style"] = storage.addressing_style
    if storage.secret_ref and scheme_of(track.storage_uri).credentials == "key-file":
        out["gcs_credentials_file"] = f"{STORAGE_SECRET_DIR}/{storage.gcs_credentials_key}"
    return out


def _batching_settings(svc: ParsedService) -> dict[str, Any]:
    batching = svc.spec.modelfleet.batching
    if batching is None:
        return {}
    return {
        "max_batch_size": batching.max_batch_size,
        "max_queue_delay_us": batching.max_queue_delay_microseconds,
        "preferred_batch_sizes": batching.preferred_batch_sizes,
    }


def _cpu_threads(svc: ParsedService, config: OperatorConfig) -> int:
    """ONNX Runtime threads = the whole CPUs of the limit (the runtime's advice); 0 if unknown."""
    cpu = str(resources_for(svc, config).get("limits", {}).get("cpu", ""))
    try:
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    except ValueError:
        return 0
    return max(1, int(cores))


def resources_for(svc: ParsedService, config: OperatorConfig) -> dict[str, Any]:
    """Requests and limits both: a missing side copies the other; none given, the defaults."""
    given = svc.spec.model.resources or {}
    requests, limits = given.get("requests"), given.get("limits")
    if not requests and not limits:
        return copy.deepcopy(dict(config.default_resources))
    out = dict(given)
    out["requests"] = dict(requests or limits or {})
    out["limits"] = dict(limits or requests or {})
    return out


def container_env(svc: ParsedService, track: Track, config: OperatorConfig) -> list[dict[str, Any]]:
    """The container's env list: settings, then secret references, then the user's env
    (the user's entries replace generated ones of the same name)."""
    env = [
        {"name": env_name(k), "value": env_value(v)}
        for k, v in sorted(settings_for(svc, track, config).items())
        if v is not None
    ]
    env += _secret_env(svc, track)
    user = [e.model_dump(mode="json", exclude_none=True) for e in svc.spec.model.env]
    names = {e["name"] for e in user}
    return [e for e in env if e["name"] not in names] + user


def _secret_env(svc: ParsedService, track: Track) -> list[dict[str, Any]]:
    """S3 keys as secretKeyRef: the operator never reads the Secret."""
    storage = svc.spec.modelfleet.storage
    if (
        storage is None
        or storage.secret_ref is None
        or scheme_of(track.storage_uri).credentials != "aws-env"
    ):
        return []
    ref = storage.secret_ref.name
    return [
        {
            "name": "AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": ref, "key": storage.access_key_id_key}},
        },
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": ref, "key": storage.secret_access_key_key}},
        },
    ]
