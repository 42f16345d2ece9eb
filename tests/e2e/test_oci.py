"""``storageUri: oci://...`` on the real control plane: applied with kubectl, rendered by the
operator in each delivery (Pull, ImageVolume, and Auto, which picks ImageVolume on this
v1.37 API server), the Deployment admitted by the real API server, its pods created by the
ReplicaSet controller in a namespace that enforces Pod Security "restricted", and the model,
pushed with ``modelfleet models push`` to a real registry (Debian's docker-registry, TLS and
basic auth, ``tests/helpers/registry.py``), served by the rendered runtime container.

* Pull: the runtime container, as the API server holds it (env, the mounted
  ``.dockerconfigjson`` of the image pull secret), is started here (``pods.py``) and pulls the
  model from the registry itself. The registry's throwaway CA is the one thing added: in a
  cluster it would be in the image's trust store.
* ImageVolume: kwok runs no kubelet, so nothing here mounts an image. The mount is stood in for
  by the pushed image's one layer, fetched from the registry by the digest the pod names and
  unpacked into a folder, which the runtime container is started on as ``/mnt/models``.

The registry is named ``localhost:PORT`` (its certificate holds that name): the operator refuses
loopback hosts in storage URIs (SSRF), ``localhost`` included, unless its
``trusted_storage_hosts`` names them, as ``conftest.release`` installs the chart with.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet_operator.config import version_tuple
from tests.e2e.conftest import REPO, wait_ready
from tests.e2e.kube import OPERATOR_USER, AuditLog, Cluster, Manifest, wait_for
from tests.e2e.pods import start_container
from tests.helpers.registry import Registry, run_registry, write_docker_config
from tests.helpers.waiting import http_status

pytestmark = pytest.mark.timeout(300)
IRIS = REPO / "runtime" / "modelfleet_runtime" / "examples" / "iris.onnx"
REQUEST = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]
}
PULL_SECRET = "model-registry"
ISVC_LABEL = "serving.modelfleet.dev/inferenceservice"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Pushed:
    registry: Registry
    host: str
    """``localhost:PORT``: the name the InferenceServices use."""
    docker_config: str
    """A Docker config for ``host``: the pull secret's ``.dockerconfigjson``."""
    tagged: str
    pinned: str
    """``modelfleet models push``'s answer: ``oci://host/models/iris@sha256:...``."""


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    """A registry with iris pushed as ``models/iris:v1`` by ``modelfleet models push``."""
    root = tmp_path_factory.mktemp("oci")
    with run_registry(root / "registry") as registry:
        host = "localhost:" + registry.host.rsplit(":", 1)[1]
        config = write_docker_config(
            root / "config.json", host, registry.username, registry.password
        )
        tagged = f"oci://{host}/models/iris:v1"
        command = [
            str(Path(sys.executable).parent / "modelfleet"),
            *("models", "push", str(IRIS), tagged, "--json"),
            *("--registry-config", str(config), "--registry-ca-file", str(registry.ca)),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        pinned = json.loads(done.stdout)["reference"]
        assert pinned.startswith(f"oci://{host}/models/iris@sha256:"), pinned
        yield Pushed(registry, host, config.read_text(), tagged, pinned)


def _pull_secret(docker_config: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": PULL_SECRET},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": docker_config},
    }


def _isvc(name: str, uri: str, delivery: str | None) -> Manifest:
    modelfleet = {"ociDelivery": delivery} if delivery else {}
    return {
        "apiVersion": "serving.modelfleet.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "minReplicas": 2,
                "imagePullSecrets": [{"name": PULL_SECRET}],
                "model": {"modelFormat": {"name": "onnx"}, "storageUri": uri},
            },
            "modelfleet": modelfleet,
        },
    }


def _apply_and_wait(
    cluster: Cluster, namespace: str, pushed: Pushed, name: str, uri: str, delivery: str | None
) -> Manifest:
    """Apply the pull secret and the InferenceService; once Ready, wait for the pods the
    ReplicaSet controller made (admitted under restricted, run by kwok); return the
    Deployment's pod template as the API server holds it."""
    cluster.apply(
        _pull_secret(pushed.docker_config), _isvc(name, uri, delivery), namespace=namespace
    )
    wait_ready(cluster, namespace, name)
    deployment = cluster.get("deployment", f"{name}-predictor", namespace)
    assert deployment is not None
    template: Manifest = deployment["spec"]["template"]

    def running() -> list[Manifest] | None:
        pods = cluster.list("pods", namespace, f"{ISVC_LABEL}={name}")
        ok = [p for p in pods if p["status"].get("phase") == "Running"]
        return ok if len(ok) == 2 else None

    for pod in wait_for(running, 60, f"two running pods of {name}"):
        (owner,) = pod["metadata"]["ownerReferences"]
        assert owner["kind"] == "ReplicaSet" and owner["controller"] is True
        # The API server kept every volume as rendered (a dropped field would show here).
        assert pod["spec"]["volumes"] == template["spec"]["volumes"]
        assert pod["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]
    labels = (cluster.get("namespace", namespace) or {})["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    return template


def _env(template: Manifest) -> dict[str, str]:
    (container,) = template["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _volumes(template: Manifest) -> dict[str, Manifest]:
    return {v["name"]: v for v in template["spec"]["volumes"]}


def _serve_and_predict(
    cluster: Cluster, namespace: str, template: Manifest, root: Path, **start: Any
) -> dict[str, Any]:
    pod = start_container(cluster, template, namespace, root, **start)
    try:
        ready = pod.probe_url("readinessProbe")
        wait_for(lambda: pod.process.poll() is not None or http_status(ready) == 200, 90, "ready")
        assert pod.process.poll() is None, pod.output()[-4000:]
        name = _env(template)["MODELFLEET_NAME"]
        response = httpx.post(f"{pod.url('http')}/v2/models/{name}/infer", json=REQUEST, timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
    finally:
        pod.stop()
    assert body["model_version"] == "1"
    (label,) = [o for o in body["outputs"] if o["datatype"] == "INT64"]
    assert label["data"] == [0]  # setosa
    return body


def test_pull_the_runtime_pulls_with_the_pull_secret(
    cluster: Cluster, namespace: str, pushed: Pushed, tmp_path: Path
) -> None:
    template = _apply_and_wait(cluster, namespace, pushed, "iris-pull", pushed.tagged, "Pull")
    env = _env(template)
    assert env["MODELFLEET_MODEL_URI"] == pushed.tagged
    assert env["MODELFLEET_REGISTRY_CONFIG"] == "/var/run/secrets/modelfleet/registry/config.json"
    volumes = _volumes(template)
    assert "model" not in volumes
    assert volumes["registry-credentials"]["secret"]["secretName"] == PULL_SECRET
    assert volumes["models"] == {"name": "models", "emptyDir": {}}  # the runtime's cache

    ca = {"MODELFLEET_REGISTRY_CA_FILE": str(pushed.registry.ca)}
    _serve_and_predict(cluster, namespace, template, tmp_path, extra_env=ca)


def _unpack_layer(registry: Registry, reference: str, into: Path) -> Path:
    """What the kubelet would mount for ``reference`` (host/repo@sha256:...): the image's one
    layer, fetched by digest (each blob's sha256 checked) and unpacked."""
    repository, digest = reference.split("/", 1)[1].split("@")
    with registry.client() as client:
        manifest = client.get(
            f"/v2/{repository}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
        )
        assert manifest.status_code == 200, manifest.text
        assert "sha256:" + hashlib.sha256(manifest.content).hexdigest() == digest
        (layer,) = manifest.json()["layers"]
        blob = client.get(f"/v2/{repository}/blobs/{layer['digest']}", follow_redirects=True)
        assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == layer["digest"]
    into.mkdir()
    with tarfile.open(fileobj=io.BytesIO(blob.content)) as tar:
        tar.extractall(into, filter="data")
    return into


def test_auto_picks_image_volume_on_this_server_and_the_mount_serves(
    cluster: Cluster, namespace: str, pushed: Pushed, tmp_path: Path
) -> None:
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version_tuple(server["gitVersion"]) >= (1, 35), server  # the premise of Auto here
    template = _apply_and_wait(cluster, namespace, pushed, "iris-auto", pushed.pinned, None)
    reference = pushed.pinned.removeprefix("oci://")
    assert _volumes(template)["model"] == {
        "name": "model",
        "image": {"reference": reference, "pullPolicy": "IfNotPresent"},
    }
    (container,) = template["spec"]["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "model")
    assert mount == {"name": "model", "mountPath": "/mnt/models", "readOnly": True}
    assert _env(template)["MODELFLEET_MODEL_URI"] == "/mnt/models"
    assert "MODELFLEET_REGISTRY_CONFIG" not in _env(template)
    assert "registry-credentials" not in _volumes(template)

    layer = _unpack_layer(pushed.registry, reference, tmp_path / "image")
    assert {p.name for p in layer.iterdir()} >= {"model.onnx", "modelfleet.json"}
    _serve_and_predict(cluster, namespace, template, tmp_path / "pod", images={reference: layer})


def test_image_volume_by_tag_is_admitted(cluster: Cluster, namespace: str, pushed: Pushed) -> None:
    template = _apply_and_wait(
        cluster, namespace, pushed, "iris-volume", pushed.tagged, "ImageVolume"
    )
    image = _volumes(template)["model"]["image"]
    assert image == {"reference": f"{pushed.host}/models/iris:v1", "pullPolicy": "IfNotPresent"}


def test_the_operator_read_the_server_version_allowed(cluster: Cluster) -> None:
    """Auto's input: the operator's own GET /version, allowed by RBAC without a rule of ours
    (the chart's ClusterRole is unchanged; every client may read /version)."""
    audit = AuditLog(cluster.audit().path)
    audit.offset = 0  # from the start: the operator asked once, when it started
    asked = [e for e in audit.events() if e.user == OPERATOR_USER and e.uri == "/version"]
    assert asked, "the operator never asked the API server for its version"
    assert all(e.code == 200 and e.decision == "allow" for e in asked), asked


def test_a_bad_oci_uri_is_invalid_spec_without_echoing_credentials(
    cluster: Cluster, namespace: str
) -> None:
    body = _isvc("iris-bad", "oci://robot:hunter2@registry.example.com/models/iris:v1", None)
    cluster.apply(body, namespace=namespace)

    def invalid() -> Manifest | None:
        found = cluster.get("inferenceservice", "iris-bad", namespace) or {}
        for condition in found.get("status", {}).get("conditions") or []:
            if condition["type"] == "Ready" and condition["reason"] == "InvalidSpec":
                return dict(condition)
        return None

    condition = wait_for(invalid, 60, "InvalidSpec")
    assert condition["status"] == "False"
    assert "storageUri: an oci:// URI must not carry credentials" in condition["message"]
    found = cluster.get("inferenceservice", "iris-bad", namespace)
    assert found is not None and "hunter2" not in json.dumps(found["status"])
    assert cluster.get("deployment", "iris-bad-predictor", namespace) is None
