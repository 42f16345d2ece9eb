"""TLS (spec.modelfleet.tls) on the real control plane: the Deployment, Service and status the
operator makes for it, a missing or unfit Secret reported in status while everything else
keeps reconciling and the pods that serve are left alone, and the Secret created later picked
up without touching the InferenceService. Pods run under kwok (no containers), so most of this
checks manifests and status; the last test runs the rendered container here (tests/e2e/pods.py)
with the Secret's files, and calls it over HTTPS on the ports and paths its probes name."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RELEASE, Operator, isvc, wait_ready
from tests.e2e.kube import OPERATOR_USER, AuditLog, Cluster, Manifest, wait_for
from tests.e2e.pods import serve_and_predict, start_container
from tests.helpers.aws import CREDENTIALS
from tests.helpers.tls import make_tls

pytestmark = pytest.mark.timeout(300)
CANARY = f"tls-canary-{uuid.uuid4().hex}"
RESYNC = 60
"""The chart's default ``resync_seconds``: a Secret is read again at least this often."""


def tls_secret(name: str, secret_type: str = "kubernetes.io/tls", **data: str) -> Manifest:
    """A Secret whose values hold ``CANARY`` (the API server checks that a kubernetes.io/tls
    Secret has tls.crt and tls.key, not that they are PEM)."""
    if not data:
        data = {"tls.crt": f"cert {CANARY}", "tls.key": f"key {CANARY}"}
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": secret_type,
        "data": encoded,
    }


def with_tls(body: Manifest, secret: str, client_auth: str = "None") -> Manifest:
    body["spec"]["modelfleet"] = {"tls": {"secretName": secret, "clientAuth": client_auth}}
    return body


def condition(cluster: Cluster, namespace: str, name: str, ctype: str) -> dict[str, Any]:
    found = cluster.get("inferenceservice", name, namespace) or {}
    for cond in found.get("status", {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def wait_reason(cluster: Cluster, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        found = condition(cluster, namespace, name, "Ready")
        return found if found.get("reason") == reason else None

    return wait_for(ready, 60, f"Ready reason {reason} on {name}")


def secret_requests(audit: AuditLog, namespace: str) -> list[tuple[str, str]]:
    """(verb, URI) of every request of the operator on Secrets in ``namespace``."""
    return [
        (e.verb, e.uri)
        for e in audit.events()
        if e.user == OPERATOR_USER and e.resource == "secrets" and e.namespace == namespace
    ]


def test_tls_deployment_service_and_status(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    audit = cluster.audit()
    cluster.apply(tls_secret("iris-cert"), namespace=namespace)
    cluster.apply(with_tls(isvc("iris"), "iris-cert"), namespace=namespace)
    found = wait_ready(cluster, namespace, "iris")
    assert found["status"]["url"] == f"https://iris.{namespace}.svc.cluster.local"
    secret = condition(cluster, namespace, "iris", "TLSSecretReady")
    assert (secret["status"], secret["reason"]) == ("True", "SecretFound")

    deployment = cluster.get("deployment", "iris-predictor", namespace)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "iris-cert", "defaultMode": 0o440}} in pod[
        "volumes"
    ]
    (container,) = pod["containers"]
    assert {"name": "tls", "mountPath": "/etc/modelfleet/tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELFLEET_TLS_CERT_FILE"] == "/etc/modelfleet/tls/tls.crt"
    assert env["MODELFLEET_TLS_KEY_FILE"] == "/etc/modelfleet/tls/tls.key"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe
        assert container[probe]["httpGet"]["port"] == "https", probe
    assert [p["name"] for p in container["ports"]] == ["https", "grpcs"]

    service = cluster.get("service", "iris", namespace)
    assert service is not None
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"https", "grpcs"}
    assert (ports["https"]["port"], ports["https"]["targetPort"]) == (443, "https")
    assert {p["appProtocol"] for p in ports.values()} == {"https"}
    # The Service reaches the pods kwok runs, through the TLS port names.
    # The EndpointSlice controller resolves the Service's targetPort names on the pods.
    wait_for(
        lambda: any(
            s.get("endpoints")
            for s in cluster.list("endpointslices", namespace, "kubernetes.io/service-name=iris")
        ),
        30,
        "endpoints of the TLS Service",
    )
    slices = cluster.list("endpointslices", namespace, "kubernetes.io/service-name=iris")
    assert {p["name"] for s in slices for p in s.get("ports") or []} == {"https", "grpcs"}

    # Secrets by name only, asked for as a Table: no value reached the operator.
    requests = secret_requests(audit, namespace)
    assert requests, "the operator never checked the Secret"
    assert all(verb == "get" and "includeObject=None" in uri for verb, uri in requests), requests
    assert all(uri.split("?")[0].endswith("/secrets/iris-cert") for _, uri in requests)
    assert CANARY not in operator.output()
    row = cluster.kubectl("get", "isvc", "iris", "-n", namespace).stdout
    assert f"https://iris.{namespace}.svc.cluster.local" in row


def test_missing_secret_is_reported_and_a_later_secret_converges(
    cluster: Cluster, namespace: str
) -> None:
    """No Deployment or Service while the Secret is missing (a pod could not start), the
    autoscaler and the PDB reconciled anyway; the Secret created later is found by the resync
    without any change to the InferenceService."""
    body = with_tls(isvc("iris", minReplicas=1, maxReplicas=3), "iris-cert", "Require")
    cluster.apply(body, namespace=namespace)
    ready = wait_reason(cluster, namespace, "iris", "TLSSecretNotFound")
    assert ready["status"] == "False"
    assert "Secret 'iris-cert' (spec.modelfleet.tls.secretName) does not exist" in ready["message"]
    assert f"in namespace {namespace!r}" in ready["message"]
    secret = condition(cluster, namespace, "iris", "TLSSecretReady")
    assert (secret["status"], secret["reason"]) == ("False", "TLSSecretNotFound")
    found = cluster.get("inferenceservice", "iris", namespace)
    assert found is not None
    assert found["status"]["url"] == f"https://iris.{namespace}.svc.cluster.local"
    assert cluster.get("hpa", "iris-predictor", namespace) is not None
    assert cluster.get("pdb", "iris-predictor", namespace) is not None
    assert cluster.get("deployment", "iris-predictor", namespace) is None
    assert cluster.get("service", "iris", namespace) is None

    # clientAuth Require: the CA must be there too. A kubernetes.io/tls Secret with three keys.
    cluster.apply(
        tls_secret("iris-cert", **{"tls.crt": "c", "tls.key": "k", "ca.crt": "ca"}),
        namespace=namespace,
    )
    found = wait_ready(cluster, namespace, "iris", timeout=RESYNC + 60)
    assert condition(cluster, namespace, "iris", "TLSSecretReady")["status"] == "True"
    deployment = cluster.get("deployment", "iris-predictor", namespace)
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELFLEET_TLS_CLIENT_CA_FILE"] == "/etc/modelfleet/tls/ca.crt"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["tcpSocket"] == {"port": "https"}, probe
        assert "httpGet" not in container[probe], probe
    assert found["metadata"]["generation"] == 1  # the InferenceService was not touched


def test_switch_to_an_unfit_secret_leaves_serving_pods_alone(
    cluster: Cluster, namespace: str
) -> None:
    """A serving InferenceService switched to TLS with an Opaque Secret: its Deployment and
    Service stay as they are (generation, ports), the HPA takes the spec's new maxReplicas."""
    cluster.apply(isvc("iris", minReplicas=1, maxReplicas=3), namespace=namespace)
    wait_ready(cluster, namespace, "iris")
    before = cluster.get("deployment", "iris-predictor", namespace)
    service = cluster.get("service", "iris", namespace)
    assert before is not None and service is not None
    cluster.apply(
        tls_secret("iris-cert", "Opaque", **{"tls.crt": "c", "tls.key": "k"}), namespace=namespace
    )
    patch = {
        "spec": {
            "predictor": {"maxReplicas": 5},
            "modelfleet": {"tls": {"secretName": "iris-cert"}},
        }
    }
    cluster.kubectl(
        "patch", "isvc", "iris", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )
    ready = wait_reason(cluster, namespace, "iris", "TLSSecretInvalid")
    assert "has type 'Opaque'" in ready["message"] and "kubernetes.io/tls" in ready["message"]
    wait_for(
        lambda: (cluster.get("hpa", "iris-predictor", namespace) or {})["spec"]["maxReplicas"] == 5,
        30,
        "HPA maxReplicas 5",
    )
    after = cluster.get("deployment", "iris-predictor", namespace)
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]
    still = cluster.get("service", "iris", namespace)
    assert still is not None and still["spec"]["ports"] == service["spec"]["ports"]
    predictor = condition(cluster, namespace, "iris", "PredictorReady")
    assert predictor["status"] == "True"  # the old pods still serve, and status says so


def test_a_secret_the_operator_may_not_read_is_reported(
    cluster: Cluster, namespace: str, every_call_authorized: AuditLog
) -> None:
    """The operator's ClusterRole narrowed after the chart granted it (no get on Secrets): the
    403 is reported in status like a missing Secret, no Deployment or Service is made, and the
    rest (HPA, PDB) is reconciled. The role is restored before the test ends."""
    role = cluster.get("clusterrole", RELEASE)
    assert role is not None
    rules = role["rules"]
    narrowed = [rule for rule in rules if "secrets" not in rule.get("resources", [])]
    assert len(narrowed) == len(rules) - 1, "the chart's role has one rule for Secrets"
    start = datetime.datetime.now(datetime.UTC)
    cluster.kubectl("patch", "clusterrole", RELEASE, "--type=json", "-p", _rules_patch(narrowed))
    try:
        # The authorizer's cache takes the change within moments: wait for it, or the first
        # reconcile could still read the (missing) Secret and report TLSSecretNotFound.
        wait_for(lambda: not may_get_secrets(cluster, namespace), 30, "the narrowed role")
        body = with_tls(isvc("iris", minReplicas=1, maxReplicas=3), "iris-cert")
        cluster.apply(body, namespace=namespace)
        ready = wait_reason(cluster, namespace, "iris", "TLSSecretForbidden")
        assert ready["status"] == "False"
        assert f"may not read Secret 'iris-cert' in namespace {namespace!r}" in ready["message"]
        secret = condition(cluster, namespace, "iris", "TLSSecretReady")
        assert (secret["status"], secret["reason"]) == ("False", "TLSSecretForbidden")
        assert cluster.get("hpa", "iris-predictor", namespace) is not None
        assert cluster.get("pdb", "iris-predictor", namespace) is not None
        assert cluster.get("deployment", "iris-predictor", namespace) is None
        assert cluster.get("service", "iris", namespace) is None
    finally:
        cluster.kubectl("patch", "clusterrole", RELEASE, "--type=json", "-p", _rules_patch(rules))
        wait_for(lambda: may_get_secrets(cluster, namespace), 30, "the restored role")
        end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=5)
        every_call_authorized.excuse(start, end, "the test took get on Secrets away")
    refused = [e for e in every_call_authorized.events() if e.decision == "forbid"]
    assert any(e.resource == "secrets" and e.namespace == namespace for e in refused)


def may_get_secrets(cluster: Cluster, namespace: str) -> bool:
    """What the API server's authorizer answers for the operator's account now."""
    asked = ["auth", "can-i", "get", "secrets", "-n", namespace, f"--as={OPERATOR_USER}"]
    return cluster.kubectl(*asked, check=False).stdout.strip() == "yes"


def _rules_patch(rules: list[dict[str, Any]]) -> str:
    return json.dumps([{"op": "replace", "path": "/rules", "value": rules}])


@pytest.mark.parametrize("client_auth", ["None", "Require"])
def test_rendered_container_serves_https(
    cluster: Cluster, namespace: str, s3: str, tmp_path: Path, client_auth: str
) -> None:
    """The operator's env, mount and probes against the real runtime: the container the API
    server holds, started here with the Secret's files, answers its probes and a predict call
    over HTTPS; with Require, its probe's port accepts connections and a client without a
    certificate is refused."""
    pki = make_tls(tmp_path / "pki")
    files = {"tls.crt": pki.cert, "tls.key": pki.key, "ca.crt": pki.ca}
    secret = tls_secret("iris-cert", **{k: v.read_text() for k, v in files.items()})
    body = isvc("iris", minReplicas=1)  # s3://models/iris, on the loopback S3 server
    cluster.apply(secret, with_tls(body, "iris-cert", client_auth), namespace=namespace)
    wait_ready(cluster, namespace, "iris")
    aws = {"AWS_ENDPOINT_URL": s3, **{k.upper(): v for k, v in CREDENTIALS.items()}}
    trust = ssl.create_default_context(cafile=str(pki.ca))
    if client_auth == "None":
        answer = serve_and_predict(
            cluster, namespace, "iris", tmp_path / "pod", verify=trust, extra_env=aws
        )
        assert answer["model_name"] == "iris"
        return
    deployment = cluster.get("deployment", "iris-predictor", namespace)
    assert deployment is not None
    template = deployment["spec"]["template"]
    pod = start_container(cluster, template, namespace, tmp_path / "pod", extra_env=aws)
    try:
        port = pod.local_port(pod.container["readinessProbe"]["tcpSocket"]["port"])

        def accepts() -> bool:
            assert pod.process.poll() is None, pod.output()[-4000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(accepts, 60, "the tcpSocket probe's port")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"https://127.0.0.1:{port}/v2/health/live", verify=trust, timeout=5)
        assert pod.process.poll() is None, pod.output()[-4000:]
    finally:
        pod.stop()
