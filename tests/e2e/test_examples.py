"""Every example in crds/examples/ on the real control plane: ``kubectl apply`` -> Deployment ->
ReplicaSet -> Pods admitted by Pod Security "restricted", scheduled and made Ready (kwok) ->
``kubectl wait --for=condition=Ready`` -> ``kubectl get isvc`` shows URL, Ready, versions and
replicas."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import REPO, wait_ready
from tests.e2e.kube import Cluster, CommandFailed, Manifest

pytestmark = pytest.mark.timeout(300)
ISVC_LABEL = "serving.modelfleet.dev/inferenceservice"
EXAMPLES = sorted((REPO / "crds" / "examples").glob("*.yaml"))


def _secret(name: str, **data: str) -> Manifest:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}


def prerequisites(cluster: Cluster, example: Manifest, namespace: str) -> None:
    """What the example's README-level instructions ask a user to create first."""
    predictor = example["spec"]["predictor"]
    modelfleet = example["spec"].get("modelfleet") or {}
    objects: list[Manifest] = []
    if account := predictor.get("serviceAccountName"):
        objects.append(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}
        )
    if ref := (modelfleet.get("storage") or {}).get("secretRef"):
        objects.append(_secret(ref["name"], AWS_ACCESS_KEY_ID="id", AWS_SECRET_ACCESS_KEY="key"))
    if ref := (modelfleet.get("auth") or {}).get("secretRef"):
        objects.append(_secret(ref["name"], tokens="e2e-token\n"))
    if tls := modelfleet.get("tls"):  # what a cert-manager Certificate writes
        keys = {"tls.crt": "e2e-cert", "tls.key": "e2e-key", "ca.crt": "e2e-ca"}
        objects.append({**_secret(tls["secretName"], **keys), "type": "kubernetes.io/tls"})
    for ref in predictor.get("imagePullSecrets") or []:
        config = '{"auths": {"registry.example.com": {"auth": "ZTJlOmUyZQ=="}}}'
        pull_secret = _secret(ref["name"], **{".dockerconfigjson": config})
        objects.append({**pull_secret, "type": "kubernetes.io/dockerconfigjson"})
    uri = predictor.get("model", {}).get("storageUri", "")
    if uri.startswith("pvc://"):
        objects.append(bound_claim(cluster, namespace, uri.removeprefix("pvc://").split("/")[0]))
    if cache_claim := (modelfleet.get("modelCache") or {}).get("claimName"):
        objects.append(bound_claim(cluster, namespace, cache_claim, "ReadWriteMany"))
    if objects:
        cluster.apply(*objects, namespace=namespace)


def bound_claim(
    cluster: Cluster, namespace: str, claim: str, mode: str = "ReadOnlyMany"
) -> Manifest:
    """A PersistentVolume made for ``claim`` in ``namespace`` (applied now), and the claim
    bound to it (returned, to apply in the namespace)."""
    volume = f"{namespace}-{claim}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": [mode],
                "storageClassName": "",
                "hostPath": {"path": f"/srv/{volume}"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim},
        "spec": {
            "accessModes": [mode],
            "storageClassName": "",
            "volumeName": volume,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


@pytest.fixture(scope="module")
def labelled_node(cluster: Cluster) -> None:
    """pvc.yaml pins its pods to ``pool: inference`` and tolerates a taint: give the kwok node
    that label (no taint: the other examples must still schedule)."""
    cluster.kubectl("label", "node", "kwok-node-0", "pool=inference", "--overwrite")


@pytest.mark.usefixtures("labelled_node")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_becomes_ready(cluster: Cluster, namespace: str, path: Path) -> None:
    example: dict[str, Any] = yaml.safe_load(path.read_text())
    example["metadata"]["namespace"] = namespace
    name = example["metadata"]["name"]
    prerequisites(cluster, example, namespace)
    out = cluster.apply(example)
    assert f"inferenceservice.serving.modelfleet.dev/{name} created" in out

    found = wait_ready(cluster, namespace, name)
    status = found["status"]
    deployments = cluster.list("deployments", namespace, f"{ISVC_LABEL}={name}")
    want = sum(d["spec"]["replicas"] for d in deployments)
    floor = example["spec"]["predictor"].get("minReplicas", 1)
    # Fixed counts and HPAs keep at least minReplicas; KEDA (minReplicas 0) leaves the
    # Deployment at one replica until its own controller, not installed here, scales it.
    assert want >= max(floor, 1), [d["metadata"]["name"] for d in deployments]
    pods = cluster.list("pods", namespace, f"{ISVC_LABEL}={name}")
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert len(running) == want, [p["metadata"]["name"] for p in pods]
    for pod in running:
        assert pod["spec"]["nodeName"] == "kwok-node-0"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert status["replicas"] == want
    assert not found["metadata"].get("finalizers"), "deletion must not wait for the operator"
    for child in [*deployments, *cluster.list("services", namespace, f"{ISVC_LABEL}={name}")]:
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == found["metadata"]["uid"] and owner["kind"] == "InferenceService"
        assert owner["controller"] is True and owner["blockOwnerDeletion"] is True
    scheme = "https" if (example["spec"].get("modelfleet") or {}).get("tls") else "http"
    assert status["url"] == f"{scheme}://{name}.{namespace}.svc.cluster.local"

    row = printed_columns(cluster.kubectl("get", "isvc", name, "-n", namespace).stdout)
    assert list(row)[:6] == ["NAME", "URL", "READY", "VERSIONS", "REPLICAS", "CANARY"], row
    assert row["NAME"] == name and row["URL"] == status["url"] and row["READY"] == "True"
    assert row["VERSIONS"] == status["modelVersions"] and row["REPLICAS"] == str(want), row


def printed_columns(table: str) -> dict[str, str]:
    """The one row of ``kubectl get``'s table, by column (values may hold spaces)."""
    header, row = table.splitlines()[:2]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    bounds = zip(starts, [*starts[1:], None], strict=True)
    return {header[a:b].strip(): row[a:b].strip() for a, b in bounds}


def test_the_real_pod_security_admission_is_on(cluster: Cluster, namespace: str) -> None:
    """The control: a root pod in the same kind of namespace is refused by PodSecurity."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "securityContext": {"runAsUser": 0},
                }
            ]
        },
    }
    with pytest.raises(CommandFailed) as refused:
        cluster.apply(pod, namespace=namespace)
    assert 'violates PodSecurity "restricted:latest"' in str(refused.value)
