"""Fixtures of the end-to-end tests: the real control plane, the chart installed by the real
helm, and the operator running as a local process under the chart's ServiceAccount.

* ``cluster`` (session): ``scripts/cluster up`` (reusing a running cluster; stopped at the end
  only when this session started it, unless ``MODELFLEET_KEEP_CLUSTER=1``).
* ``release`` (session): ``helm install modelfleet charts/modelfleet`` into a namespace that
  enforces Pod Security "restricted", waiting for the operator's Deployment (kwok's pod).
* ``operator`` (session): the container of that Deployment, as the API server stores it, run as
  a process here with a token of the chart's ServiceAccount from the TokenRequest API: the real
  RBAC authorizer decides every call it makes. Every test fails if one was refused (403 in the
  audit log).
* ``namespace``: a fresh namespace per test, labelled ``pod-security.kubernetes.io/enforce=
  restricted``, deleted afterwards.
* ``s3`` (module): a loopback S3 server (moto) holding the bundled iris model as
  ``s3://models/iris`` and ``s3://private-models/fraud``, for containers run here
  (``pods.py``); yields its endpoint URL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests.e2e.kube import AuditLog, Cluster, Manifest, wait_for
from tests.e2e.pods import LocalPod, start_container
from tests.helpers.aws import s3_client
from tests.helpers.waiting import http_status

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "cluster"
CHART = REPO / "charts" / "modelfleet"
SYSTEM_NAMESPACE = "modelfleet-system"
RELEASE = "modelfleet"
SERVICE_ACCOUNT = "modelfleet"
IRIS = REPO / "runtime" / "modelfleet_runtime" / "examples" / "iris.onnx"
RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    before = subprocess.run([CLUSTER_SCRIPT, "status"], capture_output=True, text=True)
    yield Cluster.up(CLUSTER_SCRIPT)
    if before.returncode != 0 and not os.environ.get("MODELFLEET_KEEP_CLUSTER"):
        subprocess.run([CLUSTER_SCRIPT, "down"], check=True, timeout=120)


def create_namespace(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> None:
    """A namespace with the restricted Pod Security labels, once its ``default`` ServiceAccount
    exists (the controller-manager makes it; until then pods are refused)."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**RESTRICTED, **(labels or {})}},
    }
    cluster.apply(namespace)
    # The serviceaccounts controller would make it too, but its turn can come late on a busy
    # machine (CI once waited over 30 s); it leaves an existing one alone, so make it here.
    cluster.kubectl("create", "serviceaccount", "default", "-n", name, check=False)
    wait_for(lambda: cluster.get("serviceaccount", "default", name), 30, f"{name}/default SA")


@pytest.fixture(scope="session")
def release(cluster: Cluster) -> Iterator[str]:
    """The chart installed by ``helm install`` as a user would; yields its namespace. The
    operator trusts ``localhost`` as a storage host (``test_oci.py``'s registry), as a kind
    cluster's local registry needs: without it, the SSRF check refuses the name."""
    cluster.helm("uninstall", RELEASE, "-n", SYSTEM_NAMESPACE, "--ignore-not-found", "--wait")
    create_namespace(cluster, SYSTEM_NAMESPACE)
    cluster.helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        SYSTEM_NAMESPACE,
        "--set-json",
        'operator.config.trusted_storage_hosts=["localhost"]',
        "--wait",
        "--timeout",
        "120s",
        timeout=180,
    )
    yield SYSTEM_NAMESPACE
    cluster.helm("uninstall", RELEASE, "-n", SYSTEM_NAMESPACE, "--wait", check=False)


def token_kubeconfig(cluster: Cluster, path: Path, namespace: str, account: str) -> Path:
    """A kubeconfig with a ServiceAccount token from the TokenRequest API (what a pod gets)."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=6h"
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.ca_file),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": account}}],
        "current-context": "e2e",
    }
    path.write_text(json.dumps(config))
    return path


class Operator:
    """The chart's operator container run as a process here, under the chart's identity."""

    def __init__(self, cluster: Cluster, namespace: str, root: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.root = root
        self.kubeconfig = token_kubeconfig(
            cluster, root / "operator.kubeconfig", namespace, SERVICE_ACCOUNT
        )
        self.pod: LocalPod | None = None
        self.starts = 0

    def start(self) -> None:
        deployment = self.cluster.get("deployment", RELEASE, self.namespace)
        assert deployment is not None, "the chart's operator Deployment is missing"
        self.starts += 1
        self.pod = start_container(
            self.cluster,
            deployment["spec"]["template"],
            self.namespace,
            self.root / f"run-{self.starts}",
            extra_env={"KUBECONFIG": str(self.kubeconfig)},
        )
        pod = self.pod
        wait_for(
            lambda: (
                pod.process.poll() is not None
                or http_status(pod.probe_url("readinessProbe")) == 200
            ),
            60,
            "the operator's health endpoint",
        )
        assert pod.process.poll() is None, pod.output()[-5000:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.pod is not None
        self.pod.process.send_signal(sig)
        self.pod.process.wait(timeout=30)

    def stop(self) -> None:
        if self.pod is not None and self.pod.process.poll() is None:
            self.pod.stop()

    def output(self) -> str:
        return self.pod.output() if self.pod is not None else ""


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, release: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    running = Operator(cluster, release, tmp_path_factory.mktemp("operator"))
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def every_call_authorized(cluster: Cluster, operator: Operator) -> Iterator[AuditLog]:
    """Fail the test if the RBAC authorizer refused any call of the operator meanwhile (a
    test may excuse a window it explains, through the audit log it gets)."""
    audit = cluster.audit()
    yield audit
    refused = audit.operator_refusals()
    assert not refused, "the operator was refused: " + "; ".join(
        f"{e.verb} {e.uri}" for e in refused[:10]
    )
    if operator.pod is not None and operator.pod.process.poll() is not None:
        pytest.fail(f"the operator exited:\n{operator.output()[-5000:]}")


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"e2e-{request.node.name[:30].lower()}"
    name = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    name = f"{name}-{uuid.uuid4().hex[:5]}"
    create_namespace(cluster, name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def isvc(name: str, **predictor: object) -> Manifest:
    """A small InferenceService manifest (model from S3, two replicas unless told)."""
    spec: dict[str, object] = {
        "minReplicas": 2,
        "model": {"modelFormat": {"name": "onnx"}, "storageUri": "s3://models/iris"},
        **predictor,
    }
    return {
        "apiVersion": "serving.modelfleet.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": spec},
    }


def wait_ready(cluster: Cluster, namespace: str, name: str, timeout: int = 90) -> Manifest:
    """``kubectl wait --for=condition=Ready inferenceservice/NAME``; returns the object."""
    cluster.kubectl(
        "wait",
        "--for=condition=Ready",
        f"inferenceservice/{name}",
        "-n",
        namespace,
        f"--timeout={timeout}s",
        timeout=timeout + 30,
    )
    found = cluster.get("inferenceservice", name, namespace)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = s3_client(endpoint)
    for bucket, prefix in (("models", "iris"), ("private-models", "fraud")):
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=f"{prefix}/1/model.onnx", Body=IRIS.read_bytes())
    yield endpoint
    server.stop()
