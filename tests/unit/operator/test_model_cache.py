"""The model cache volume and the probes of a predictor pod (issue 13, parts 2 and 4): an
emptyDir cache by default, a PersistentVolumeClaim when named, none when the model is not
downloaded; the runtime pointed at it by its own settings; never a hostPath; a startup probe
on readiness whose budget is the startup timeout."""

from __future__ import annotations

import math
from typing import Any

import pytest

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.crd import build_crd
from modelfleet_operator.parse import SpecError, parse
from modelfleet_operator.render import render
from modelfleet_operator.render.cache import CACHE_DIR, CACHE_VOLUME
from modelfleet_operator.render.deployment import STARTUP_PERIOD
from modelfleet_runtime.config import Settings
from tests.unit.operator.helpers import isvc, predictor, restricted_violations


def _pod(config: OperatorConfig, **modelfleet: Any) -> dict[str, Any]:
    spec = predictor()
    if modelfleet:
        spec["modelfleet"] = modelfleet
    dep = next(o for o in render(parse(isvc(spec)), config) if o["kind"] == "Deployment")
    pod: dict[str, Any] = dep["spec"]["template"]["spec"]
    return pod


def _cache_volume(pod: dict[str, Any]) -> dict[str, Any] | None:
    return next((v for v in pod["volumes"] if v["name"] == CACHE_VOLUME), None)


def _env(pod: dict[str, Any]) -> dict[str, str]:
    (ctr,) = pod["containers"]
    return {e["name"]: e["value"] for e in ctr["env"] if "value" in e}


def _mount_of(pod: dict[str, Any], volume: str) -> dict[str, Any] | None:
    (ctr,) = pod["containers"]
    return next((m for m in ctr["volumeMounts"] if m["name"] == volume), None)


def test_an_empty_dir_cache_by_default(config: OperatorConfig) -> None:
    pod = _pod(config)
    assert _cache_volume(pod) == {"name": CACHE_VOLUME, "emptyDir": {}}
    assert _mount_of(pod, CACHE_VOLUME) == {"name": CACHE_VOLUME, "mountPath": CACHE_DIR}
    env = _env(pod)
    assert env["MODELFLEET_CACHE_DIR"] == "/var/cache/modelfleet" == CACHE_DIR
    assert "MODELFLEET_CACHE_SIZE_LIMIT" not in env
    assert restricted_violations(pod) == []


def test_a_size_limit_bounds_the_empty_dir_and_the_runtime(config: OperatorConfig) -> None:
    pod = _pod(config, modelCache={"sizeLimit": "10Gi"})
    assert _cache_volume(pod) == {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": "10Gi"}}
    assert _env(pod)["MODELFLEET_CACHE_SIZE_LIMIT"] == "10Gi"


def test_a_claim_is_mounted_read_write(config: OperatorConfig) -> None:
    pod = _pod(config, modelCache={"claimName": "model-cache-rwx", "sizeLimit": "500Mi"})
    assert _cache_volume(pod) == {
        "name": CACHE_VOLUME,
        "persistentVolumeClaim": {"claimName": "model-cache-rwx"},
    }
    assert not (_mount_of(pod, CACHE_VOLUME) or {}).get("readOnly")
    env = _env(pod)
    assert env["MODELFLEET_CACHE_DIR"] == CACHE_DIR
    assert env["MODELFLEET_CACHE_SIZE_LIMIT"] == "500Mi"
    assert restricted_violations(pod) == []
    assert not any("hostPath" in v for v in pod["volumes"])


def test_the_runtime_reads_the_rendered_cache_settings(
    config: OperatorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(_pod(config, modelCache={"sizeLimit": "2Gi"}))
    for name in ("MODELFLEET_CACHE_DIR", "MODELFLEET_CACHE_SIZE_LIMIT"):
        monkeypatch.setenv(name, env[name])
    settings = Settings(model_uri="s3://models/iris")
    assert str(settings.cache_dir) == CACHE_DIR
    assert settings.cache_size_limit == 2 * 1024**3  # the runtime parses the quantity


def test_disabled_or_not_downloaded_means_no_cache(config: OperatorConfig) -> None:
    off = _pod(config, modelCache={"enabled": False})
    assert _cache_volume(off) is None and "MODELFLEET_CACHE_DIR" not in _env(off)
    for uri in ("pvc://models/iris", "file:///models/iris"):
        spec = predictor()
        spec["predictor"]["model"]["storageUri"] = uri
        dep = next(o for o in render(parse(isvc(spec)), config) if o["kind"] == "Deployment")
        pod = dep["spec"]["template"]["spec"]
        assert _cache_volume(pod) is None and "MODELFLEET_CACHE_DIR" not in _env(pod), uri
    image = config.model_copy(update={"server_version": "v1.37.2"})  # oci:// as an image volume
    spec = predictor()
    spec["predictor"]["model"]["storageUri"] = "oci://registry.example.com/models/iris:v1"
    dep = next(o for o in render(parse(isvc(spec)), image) if o["kind"] == "Deployment")
    assert _cache_volume(dep["spec"]["template"]["spec"]) is None


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        ({"enabled": False, "claimName": "c"}, "enabled is false"),
        ({"sizeLimit": "ten gigs"}, "sizeLimit"),
        ({"sizeLimit": "0"}, "sizeLimit"),
        ({"claimName": "Not_A_Name"}, "claimName"),
        ({"hostPath": "/var/cache"}, "hostPath"),
    ],
)
def test_bad_cache_specs_are_refused(cache: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(isvc({**predictor(), "modelfleet": {"modelCache": cache}}))
    assert message in caught.value.message


def test_the_crd_refuses_a_disabled_cache_with_a_claim() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    cache = schema["properties"]["spec"]["properties"]["modelfleet"]["properties"]["modelCache"]
    assert set(cache["properties"]) == {"enabled", "claimName", "sizeLimit"}
    (rule,) = cache["x-kubernetes-validations"]
    assert "enabled is false" in rule["message"]


def test_startup_probe_waits_for_ready_within_the_budget(config: OperatorConfig) -> None:
    (ctr,) = _pod(config)["containers"]
    startup = ctr["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] == STARTUP_PERIOD
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert config.startup_timeout_seconds <= budget < config.startup_timeout_seconds + 2
    assert config.startup_timeout_seconds >= 1800  # a multi-gigabyte download fits
    # Liveness never asks storage, and is not probed before startup passes.
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


@pytest.mark.parametrize(("operator", "spec", "budget"), [(600, None, 600), (600, 7201, 7201)])
def test_the_startup_budget_is_configurable(
    config: OperatorConfig, operator: int, spec: int | None, budget: int
) -> None:
    cfg = config.model_copy(update={"startup_timeout_seconds": operator})
    (ctr,) = _pod(cfg, **({"startupTimeoutSeconds": spec} if spec else {}))["containers"]
    startup = ctr["startupProbe"]
    assert startup["failureThreshold"] == math.ceil(budget / STARTUP_PERIOD)
