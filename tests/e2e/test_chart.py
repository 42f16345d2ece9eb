"""The chart on a real API server, installed, upgraded and uninstalled with the real helm."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import CHART, RELEASE, create_namespace
from tests.e2e.kube import Cluster

pytestmark = pytest.mark.timeout(300)
CRD = "inferenceservices.serving.modelfleet.dev"


def test_install_established_the_crd_and_rbac(cluster: Cluster, release: str) -> None:
    crd = cluster.get("crd", CRD)
    assert crd is not None
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    for kind in ("clusterrole", "clusterrolebinding"):  # cluster-wide: one of each
        assert cluster.get(kind, RELEASE) is not None, f"{kind}/{RELEASE} missing"
    assert cluster.get("serviceaccount", RELEASE, release) is not None
    deployment = cluster.get("deployment", RELEASE, release)
    assert deployment is not None and deployment["status"].get("readyReplicas") == 1
    # The real authorizer grants exactly what the chart says: the operator's identity may
    # patch InferenceServices and get a Secret by name (the TLS Secret's Table), but may not
    # list or watch Secrets or touch RBAC.
    identity = f"--as=system:serviceaccount:{release}:{RELEASE}"

    def can(*args: str) -> str:
        return cluster.kubectl("auth", "can-i", *args, identity, check=False).stdout.strip()

    assert can("patch", "inferenceservices.serving.modelfleet.dev", "-A") == "yes"
    assert can("patch", "deployments.apps", "-A") == "yes"
    assert can("get", "secrets", "-A") == "yes"
    assert can("list", "secrets", "-A") == "no"
    assert can("watch", "secrets", "-A") == "no"
    assert can("create", "clusterroles.rbac.authorization.k8s.io") == "no"
    assert can("create", "pods/exec", "-A") == "no"


def test_upgrade_and_uninstall(cluster: Cluster) -> None:
    """A second release of the chart: ``helm upgrade`` with a changed value reaches the
    Deployment; ``helm uninstall`` removes every object it made and keeps the CRD."""
    namespace, name = "e2e-chart-upgrade", "mf-upgrade"
    cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true")
    create_namespace(cluster, namespace)
    cluster.helm("install", name, str(CHART), "-n", namespace, "--wait", "--timeout", "120s")
    fullname = f"{name}-modelfleet"

    def env(deployment_name: str) -> dict[str, str]:
        found = cluster.get("deployment", deployment_name, namespace)
        assert found is not None
        container = found["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", "") for e in container["env"]}

    assert env(fullname)["MODELFLEET_OPERATOR_LOG_LEVEL"] == "INFO"
    cluster.helm(
        "upgrade",
        name,
        str(CHART),
        "-n",
        namespace,
        "--set",
        "operator.logLevel=debug",
        "--wait",
        "--timeout",
        "120s",
    )
    assert env(fullname)["MODELFLEET_OPERATOR_LOG_LEVEL"] == "DEBUG"
    history = json.loads(cluster.helm("history", name, "-n", namespace, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2]
    assert history[-1]["status"] == "deployed"

    cluster.helm("uninstall", name, "-n", namespace, "--wait")
    cluster_scoped = [("clusterrole", None), ("clusterrolebinding", None)]
    for kind, scope in [("deployment", namespace), ("serviceaccount", namespace), *cluster_scoped]:
        assert cluster.get(kind, fullname, scope) is None, f"{kind} left behind"
    assert cluster.get("crd", CRD) is not None, "helm must never delete the CRD"
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
