"""O14 end to end: the real operator (kopf) against the kmock emulator, with a Secret in the
cluster whose values are a unique canary. The operator references the Secret by name and
never reads it: no request touches ``secrets`` but the test's own create, and the canary
appears in no write the operator makes (children, status, Events) and no log record.

Uses the operator integration fixtures, imported in this folder's conftest (their files are
not edited here)."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from typing import Any

import pytest

from tests.integration.operator.conftest import DEPLOYMENTS, NS, Cluster, isvc
from tests.integration.operator.emulator import ISVC_RESOURCE

CANARY = f"canary-{uuid.uuid4().hex}"
NAME = "fraud"


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "type": "Opaque",
        "data": encoded,
        "stringData": data,
    }


def _ready(cluster: Cluster) -> bool:
    status = (cluster.get(ISVC_RESOURCE, NAME) or {}).get("status") or {}
    ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready", {})
    return bool(ready.get("status") == "True")


@pytest.mark.usefixtures("operator")
async def test_secret_values_never_reach_writes_status_events_or_logs(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = {"AWS_ACCESS_KEY_ID": f"AKIA{CANARY}", "AWS_SECRET_ACCESS_KEY": CANARY}
    await cluster.request(
        "POST", f"/api/v1/namespaces/{NS}/secrets", json=secret("fraud-s3", credentials)
    )
    await cluster.request(
        "POST", f"/api/v1/namespaces/{NS}/secrets", json=secret("fraud-tokens", {"t": CANARY})
    )
    body = isvc(NAME)
    body["spec"]["modelfleet"] = {
        "storage": {"secretRef": {"name": "fraud-s3"}, "endpoint": "https://minio.example:9000"},
        "auth": {"secretRef": {"name": "fraud-tokens"}},
    }
    await cluster.create(body)
    await cluster.handled(NAME)
    dep_name = f"{NAME}-predictor"
    dep = await cluster.eventually(lambda: cluster.get(DEPLOYMENTS, dep_name), what="Deployment")
    await cluster.make_ready(dep_name)
    await cluster.eventually(lambda: _ready(cluster), what="Ready")

    # The Deployment does reference the Secrets (so the test looks at the right objects).
    rendered = json.dumps(dep)
    assert '"fraud-s3"' in rendered and '"fraud-tokens"' in rendered
    requests = list(cluster.emulator)
    touched = [
        (r.method.value, r.url.path)
        for r in requests
        if r.resource is not None and r.resource.plural == "secrets"
    ]
    assert touched == [("POST", f"/api/v1/namespaces/{NS}/secrets")] * 2, touched
    writes = [r for r in cluster.emulator.writes() if r.resource and r.resource.plural != "secrets"]
    assert len(writes) >= 3  # children, status, events: the search below covers real writes
    leaked = [f"{r.method.value} {r.url.path}" for r in writes if CANARY in (r.text or "")]
    assert leaked == []
    objects = [
        json.dumps(dict(obj.raw))
        for (res, _, _), obj in cluster.emulator.objects.items()
        if res.plural != "secrets"
    ]
    assert objects and not [o for o in objects if CANARY in o]
    logged = [r.getMessage() + repr(r.args) + str(r.exc_text) for r in caplog.records]
    assert logged and not [line for line in logged if CANARY in line]
