"""From YAML to a predict call: what the operator renders on the real API server starts a
working server.

The example is applied with ``kubectl``; once Ready, the runtime container of the Deployment
the operator created is taken from the API server (command, args, env, mounted Secrets; the
image aside) and started here with the runtime installed in this environment, its model in a
loopback S3 server. It is probed on the paths and ports its pod spec's probes name, then sent
the predict call the README shows.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import REPO, wait_ready
from tests.e2e.kube import Cluster
from tests.e2e.pods import serve_and_predict
from tests.helpers.aws import CREDENTIALS

pytestmark = pytest.mark.timeout(300)
TOKEN = "e2e-secret-token"


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _example(name: str, namespace: str) -> dict[str, Any]:
    example: dict[str, Any] = yaml.safe_load((REPO / "crds" / "examples" / name).read_text())
    example["metadata"]["namespace"] = namespace
    return example


def test_plain_example_serves_the_readme_call(
    cluster: Cluster, namespace: str, s3: str, tmp_path: Path
) -> None:
    """README: ``kubectl apply -f crds/examples/plain.yaml`` after uploading a model to
    s3://models/iris, then the curl line. The pod's S3 comes from the environment there (an
    IAM role); here the same standard AWS variables point at the loopback server."""
    cluster.apply(_example("plain.yaml", namespace))
    wait_ready(cluster, namespace, "iris")
    aws = {"AWS_ENDPOINT_URL": s3, **{k.upper(): v for k, v in CREDENTIALS.items()}}
    body = serve_and_predict(cluster, namespace, "iris", tmp_path, extra_env=aws)
    assert body["model_name"] == "iris" and body["model_version"] == "1"
    (output,) = [o for o in body["outputs"] if o["datatype"] == "INT64"]
    assert output["data"] == [0]  # setosa


def test_private_bucket_example_with_secrets(
    cluster: Cluster, namespace: str, s3: str, tmp_path: Path
) -> None:
    """private-s3.yaml: S3 keys and API tokens from Secrets by reference. The endpoint the
    YAML names (a cluster DNS name) is mapped to the loopback server; everything else, the
    credentials and the mounted token file included, comes from what the API server holds."""
    example = _example("private-s3.yaml", namespace)
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fraud-model"}},
        _secret("fraud-s3-credentials", {k.upper(): v for k, v in CREDENTIALS.items()}),
        _secret("fraud-api-tokens", {"tokens": TOKEN + "\n"}),
        example,
        namespace=namespace,
    )
    wait_ready(cluster, namespace, "fraud")
    endpoint = example["spec"]["modelfleet"]["storage"]["endpoint"]
    body = serve_and_predict(
        cluster,
        namespace,
        "fraud",
        tmp_path,
        addresses={endpoint: s3},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert body["model_name"] == "fraud"
