"""The operator's SSRF check of storage hosts (``checks.check_host``): loopback, link-local,
unspecified and cloud metadata hosts are refused in storageUri (oci:// included) and in the
storage endpoint, in every spelling a resolver accepts, unless the operator's
``trusted_storage_hosts`` names the host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet_operator.checks import check_host
from modelfleet_operator.cli import render_command
from modelfleet_operator.parse import SpecError, parse
from tests.unit.operator.helpers import isvc

REFUSED = [
    "localhost",
    "LOCALHOST",
    "localhost.",
    "registry.localhost",
    "a.b.Localhost",
    "127.0.0.1",
    "127.1",  # getaddrinfo reads these legacy IPv4 forms as 127.0.0.1 ...
    "0x7f.1",
    "2130706433",
    "2852039166",  # ... and this as 169.254.169.254
    "0",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "fe80::1",
    "169.254.169.254",
    "0.0.0.0",
    "metadata.google.internal",
    "Metadata",
]
ALLOWED = [
    "registry.example.com",
    "s3.eu-west-1.amazonaws.com",
    "localhost.example.com",
    "mylocalhost",
    "10.0.0.7",
    "1e100.net",
    "123abc.example",
    "fd00::1",
]


@pytest.mark.parametrize("host", REFUSED)
def test_refused_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="points at a"):
        check_host(host, "storageUri")


@pytest.mark.parametrize("host", ALLOWED)
def test_other_hosts_pass(host: str) -> None:
    check_host(host, "storageUri")


def test_trusted_hosts_pass_exactly() -> None:
    check_host("localhost", "storageUri", ["LocalHost"])
    check_host("LOCALHOST.", "storageUri", ["localhost"])
    with pytest.raises(ValueError, match="loopback"):
        check_host("registry.localhost", "storageUri", ["localhost"])


def _spec(uri: str, **modelfleet: Any) -> dict[str, Any]:
    model = {"modelFormat": {"name": "onnx"}, "storageUri": uri}
    return {"predictor": {"model": model}, "modelfleet": modelfleet}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_spec("oci://localhost:5001/models/iris:v1"), "spec.predictor.model.storageUri"),
        (_spec("https://localhost/iris.onnx"), "spec.predictor.model.storageUri"),
        (_spec("https://2852039166/iris.onnx"), "spec.predictor.model.storageUri"),
        (
            _spec("s3://models/iris", storage={"endpoint": "http://minio.localhost:9000"}),
            "spec.modelfleet.storage.endpoint",
        ),
        (
            _spec("s3://models/iris", canary={"storageUri": "oci://localhost/iris"}),
            "spec.modelfleet.canary.storageUri",
        ),
    ],
)
def test_specs_naming_loopback_hosts_are_invalid_unless_trusted(
    spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse(isvc(spec))
    assert info.value.message.startswith(field)
    assert "link-local or loopback" in info.value.message
    parse(isvc(spec), trusted_hosts=["localhost", "minio.localhost", "2852039166"])


def test_render_reads_the_trusted_hosts_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(isvc(_spec("oci://localhost:5001/models/iris:v1"))))
    assert render_command(["-f", str(path)]) == 1
    assert "InvalidSpec: iris: spec.predictor.model.storageUri" in capsys.readouterr().err
    monkeypatch.setenv("MODELFLEET_OPERATOR_TRUSTED_STORAGE_HOSTS", '["localhost"]')
    assert render_command(["-f", str(path)]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    (deployment,) = [o for o in printed if o["kind"] == "Deployment"]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MODELFLEET_MODEL_URI"] == "oci://localhost:5001/models/iris:v1"
