"""TLS (spec.modelfleet.tls, issue 12): the spec and the CRD accept and refuse what they should,
the render mounts the Secret and switches env, ports, probes and Services, the status says
https and reports a missing or unfit Secret, and the Secret's Table is read right."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import kopf
import kubernetes_validate
import pytest

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.crd import spec_schema
from modelfleet_operator.kube import summary_from_table
from modelfleet_operator.parse import ParsedService, SpecError, parse
from modelfleet_operator.render import render
from modelfleet_operator.render.runtime_env import env_name
from modelfleet_operator.render.tls import SETTINGS
from modelfleet_operator.status import (
    SecretSummary,
    build_status,
    check_tls_secret,
    tls_secret_forbidden,
)
from modelfleet_runtime.config import Settings
from tests.unit.operator.helpers import isvc, predictor, restricted_violations

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TLS_SECRET = SecretSummary(type="kubernetes.io/tls", keys=3)


def _body(client_auth: str | None = None, **fields: Any) -> dict[str, Any]:
    spec = predictor(minReplicas=2, **fields)
    tls: dict[str, Any] = {"secretName": "iris-cert"}
    if client_auth is not None:
        tls["clientAuth"] = client_auth
    spec["modelfleet"] = {"tls": tls}
    return isvc(spec)


def _svc(client_auth: str | None = None, **fields: Any) -> ParsedService:
    return parse(_body(client_auth, **fields))


def _objects(svc: ParsedService, config: OperatorConfig) -> list[dict[str, Any]]:
    return render(svc, config)


def _of(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def _container(objs: list[dict[str, Any]], name: str = "iris-predictor") -> dict[str, Any]:
    (ctr,) = _of(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return dict(ctr)


# --- spec and CRD ---------------------------------------------------------------------------


def test_spec_defaults_client_auth_to_none() -> None:
    tls = _svc().spec.modelfleet.tls
    assert tls is not None and (tls.secret_name, tls.client_auth) == ("iris-cert", "None")
    assert parse(isvc(predictor())).spec.modelfleet.tls is None


@pytest.mark.parametrize(
    ("tls", "gist"),
    [
        ({"secretName": "Iris_Cert"}, "spec.modelfleet.tls.secretName"),
        ({"secretName": ""}, "spec.modelfleet.tls.secretName"),
        ({}, "spec.modelfleet.tls.secretName: Field required"),
        ({"secretName": "c", "clientAuth": "Optional"}, "'None' or 'Require'"),
        ({"secretName": "c", "caSecret": "x"}, "spec.modelfleet.tls.caSecret: unknown field"),
    ],
)
def test_spec_and_crd_refuse_bad_tls(tls: dict[str, Any], gist: str) -> None:
    body = isvc(predictor())
    body["spec"]["modelfleet"] = {"tls": tls}
    with pytest.raises(SpecError) as refused:
        parse(body)
    assert gist in refused.value.message
    schema = spec_schema()
    if "unknown field" not in gist:  # the CRD keeps unknown fields for the operator to name
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body["spec"], schema)


def test_crd_accepts_both_client_auth_modes() -> None:
    for mode in ("None", "Require"):
        jsonschema.validate(_body(mode)["spec"], spec_schema())


@pytest.mark.parametrize("name", [f"MODELFLEET_{s.upper()}" for s in SETTINGS])
def test_user_env_may_not_set_the_tls_files(name: str) -> None:
    body = _body()
    body["spec"]["predictor"]["model"]["env"] = [{"name": name, "value": "/tmp/x"}]
    with pytest.raises(SpecError, match=f"{name} is set by the operator"):
        parse(body)


def test_env_names_are_the_runtime_settings(
    config: OperatorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    for field in SETTINGS:
        assert env_name(field) == f"MODELFLEET_{field.upper()}"
    env = _container(_objects(_svc("Require"), config))["env"]
    for item in env:
        monkeypatch.setenv(item["name"], item["value"])
    settings = Settings()
    assert str(settings.tls_cert_file) == "/etc/modelfleet/tls/tls.crt"
    assert str(settings.tls_key_file) == "/etc/modelfleet/tls/tls.key"
    assert str(settings.tls_client_ca_file) == "/etc/modelfleet/tls/ca.crt"


# --- render ---------------------------------------------------------------------------------


def test_without_tls_nothing_changes(config: OperatorConfig) -> None:
    plain = _objects(parse(isvc(predictor(minReplicas=2))), config)
    text = repr(plain)
    assert "https" not in text and "tls" not in text and "HTTPS" not in text


def test_secret_volume_mount_and_env(config: OperatorConfig) -> None:
    objs = _objects(_svc(), config)
    pod = _of(objs, "Deployment", "iris-predictor")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    # The whole Secret (no items) so the kubelet's in-place update reaches every key.
    assert volume == {
        "name": "tls",
        "secret": {"secretName": "iris-cert", "defaultMode": 0o440},
    }
    ctr = _container(objs)
    (mount,) = [m for m in ctr["volumeMounts"] if m["name"] == "tls"]
    assert mount == {"name": "tls", "mountPath": "/etc/modelfleet/tls", "readOnly": True}
    assert not [m for m in ctr["volumeMounts"] if "subPath" in m]
    env = {e["name"]: e["value"] for e in ctr["env"] if "value" in e}
    assert env["MODELFLEET_TLS_CERT_FILE"] == "/etc/modelfleet/tls/tls.crt"
    assert env["MODELFLEET_TLS_KEY_FILE"] == "/etc/modelfleet/tls/tls.key"
    assert "MODELFLEET_TLS_CLIENT_CA_FILE" not in env
    required = _container(_objects(_svc("Require"), config))
    env = {e["name"]: e["value"] for e in required["env"] if "value" in e}
    assert env["MODELFLEET_TLS_CLIENT_CA_FILE"] == "/etc/modelfleet/tls/ca.crt"


def test_probes_are_https_and_tcp_with_mutual_tls(config: OperatorConfig) -> None:
    plain = _container(_objects(parse(isvc(predictor(minReplicas=2))), config))
    ctr = _container(_objects(_svc(), config))
    probes = [k for k in plain if k.endswith("Probe")]
    assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(probes)
    for key in probes:
        get = dict(plain[key]["httpGet"])
        assert ctr[key]["httpGet"] == {**get, "port": "https", "scheme": "HTTPS"}
        assert {k: v for k, v in ctr[key].items() if k != "httpGet"} == {
            k: v for k, v in plain[key].items() if k != "httpGet"
        }
    required = _container(_objects(_svc("Require"), config))
    for key in probes:
        assert "httpGet" not in required[key]
        assert required[key]["tcpSocket"] == {"port": "https"}
        assert required[key]["periodSeconds"] == plain[key]["periodSeconds"]


def test_ports_services_and_scrape_scheme(config: OperatorConfig) -> None:
    objs = _objects(_svc(), config)
    ctr = _container(objs)
    assert [(p["name"], p["containerPort"]) for p in ctr["ports"]] == [
        ("https", 8080),
        ("grpcs", 8081),
    ]
    service = _of(objs, "Service", "iris")
    assert service["spec"]["ports"] == [
        {
            "name": "https",
            "port": 443,
            "targetPort": "https",
            "protocol": "TCP",
            "appProtocol": "https",
        },
        {
            "name": "grpcs",
            "port": 8081,
            "targetPort": "grpcs",
            "protocol": "TCP",
            "appProtocol": "https",
        },
    ]
    template = _of(objs, "Deployment", "iris-predictor")["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/scheme"] == "https"


def test_canary_tracks_and_gateway_route(config: OperatorConfig) -> None:
    spec = _body(canaryTrafficPercent=20)["spec"]
    spec["modelfleet"]["canary"] = {"storageUri": "s3://models/iris-v2"}
    gateway = config.model_copy(update={"gateway_api": True})
    objs = _objects(parse(isvc(spec)), gateway)
    for name in ("iris-predictor", "iris-predictor-canary"):
        assert _container(objs, name)["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
        assert _of(objs, "Service", name)["spec"]["ports"][0]["port"] == 443
    route = _of(objs, "HTTPRoute", "iris")
    assert {b["port"] for b in route["spec"]["rules"][0]["backendRefs"]} == {443}


@pytest.mark.parametrize("client_auth", ["None", "Require"])
def test_tls_manifests_pass_kubernetes_schemas_and_pod_security(
    client_auth: str, config: OperatorConfig
) -> None:
    for obj in _objects(_svc(client_auth), config):
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
        template = obj.get("spec", {}).get("template")
        if template is not None:
            assert restricted_violations(template["spec"]) == []


def test_render_does_not_mutate_between_calls(config: OperatorConfig) -> None:
    svc = _svc()
    first = _objects(svc, config)
    again = copy.deepcopy(first)
    assert _objects(svc, config) == again == first


# --- status ---------------------------------------------------------------------------------


def _dep(ready: int = 2) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "iris-predictor", "generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": ready,
            "readyReplicas": ready,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }


def _cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_status_url_is_https_and_secret_condition_true() -> None:
    svc = _svc()
    status = build_status(svc, [_dep()], None, T0, tls_problem=check_tls_secret(svc, TLS_SECRET))
    assert status["url"] == "https://iris.ml.svc.cluster.local"
    assert _cond(status, "Ready")["status"] == "True"
    secret = _cond(status, "TLSSecretReady")
    assert (secret["status"], secret["reason"]) == ("True", "SecretFound")
    plain = build_status(parse(isvc(predictor(minReplicas=2))), [_dep()], None, T0)
    assert plain["url"].startswith("http://")
    assert "TLSSecretReady" not in {c["type"] for c in plain["conditions"]}


@pytest.mark.parametrize(
    ("client_auth", "secret", "reason", "gist"),
    [
        (None, None, "TLSSecretNotFound", "Secret 'iris-cert' (spec.modelfleet.tls.secretName)"),
        (None, SecretSummary("Opaque", 2), "TLSSecretInvalid", "has type 'Opaque'"),
        ("Require", SecretSummary("kubernetes.io/tls", 2), "TLSSecretInvalid", "no ca.crt"),
    ],
)
def test_missing_or_unfit_secret_is_reported(
    client_auth: str | None, secret: SecretSummary | None, reason: str, gist: str
) -> None:
    svc = _svc(client_auth)
    problem = check_tls_secret(svc, secret)
    assert problem is not None and problem.reason == reason
    status = build_status(svc, [_dep()], None, T0, tls_problem=problem)
    ready, found = _cond(status, "Ready"), _cond(status, "TLSSecretReady")
    for cond in (ready, found):
        assert (cond["status"], cond["reason"]) == ("False", reason)
        assert gist in cond["message"]
        assert "left as they are" in cond["message"]
    # The Deployment that still serves is still reported.
    assert _cond(status, "PredictorReady")["status"] == "True"
    assert status["replicas"] == 2
    # Once the Secret is fixed: Ready flips, and only the flipped conditions move in time.
    later = T0 + timedelta(minutes=1)
    fixed = build_status(svc, [_dep()], status, later, tls_problem=None)
    assert _cond(fixed, "Ready")["status"] == "True"
    assert _cond(fixed, "TLSSecretReady")["lastTransitionTime"] == "2025-01-01T12:01:00Z"
    assert _cond(fixed, "PredictorReady")["lastTransitionTime"] == "2025-01-01T12:00:00Z"


def test_a_secret_the_operator_may_not_read_is_reported() -> None:
    svc = _svc()
    status = build_status(svc, [_dep()], None, T0, tls_problem=tls_secret_forbidden(svc, "x"))
    for cond in (_cond(status, "Ready"), _cond(status, "TLSSecretReady")):
        assert (cond["status"], cond["reason"]) == ("False", "TLSSecretForbidden")
        assert f"may not read Secret 'x' in namespace {svc.namespace!r}" in cond["message"]
        assert "get on secrets" in cond["message"] and "left as they are" in cond["message"]
    assert _cond(status, "PredictorReady")["status"] == "True"


def test_fit_secrets_and_no_tls_are_no_problem() -> None:
    assert check_tls_secret(_svc(), SecretSummary("kubernetes.io/tls", 2)) is None
    assert check_tls_secret(_svc("Require"), TLS_SECRET) is None
    assert check_tls_secret(parse(isvc(predictor())), None) is None


# --- the Secret's Table ---------------------------------------------------------------------


def _table(secret_type: str, keys: int) -> dict[str, Any]:
    """The shape kube-apiserver answers ``Accept: application/json;as=Table;...`` with for one
    Secret and ``includeObject=None`` (checked on the real API server by tests/e2e/test_tls.py)."""
    columns = ["Name", "Type", "Data", "Age"]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "42"},
        "columnDefinitions": [{"name": c, "type": "string", "format": ""} for c in columns],
        "rows": [{"cells": ["iris-cert", secret_type, keys, "5s"]}],
    }


def test_summary_from_table() -> None:
    assert summary_from_table(_table("kubernetes.io/tls", 3)) == TLS_SECRET
    assert summary_from_table(_table("Opaque", 1)) == SecretSummary("Opaque", 1)


def test_summary_from_anything_else_is_a_permanent_error() -> None:
    secret = {"kind": "Secret", "type": "kubernetes.io/tls", "data": {"tls.key": "c2VjcmV0"}}
    with pytest.raises(kopf.PermanentError, match="unexpected Table") as refused:
        summary_from_table(secret)
    assert "c2VjcmV0" not in str(refused.value)
