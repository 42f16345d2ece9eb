"""``oci://`` models in the operator: the URI's form, ``spec.modelfleet.ociDelivery``
(Auto/Pull/ImageVolume), ``spec.predictor.imagePullSecrets``, and what each delivery renders:
the runtime's settings, the image volume or the mounted registry credentials, Pod Security
"restricted" and the real Kubernetes schemas."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelfleet_operator.cli import render_command
from modelfleet_operator.config import OperatorConfig, version_from_info, version_tuple
from modelfleet_operator.crd import build_crd
from modelfleet_operator.oci_ref import OciRef, parse_oci_uri
from modelfleet_operator.parse import SpecError, parse
from modelfleet_operator.render import render
from modelfleet_runtime.config import Settings
from tests.unit.operator.helpers import EXAMPLES, isvc, restricted_violations

DIGEST = "sha256:" + "ab" * 32
URI = "oci://registry.example.com:5000/models/iris:v1"


@pytest.mark.parametrize(
    ("uri", "expected", "image"),
    [
        (
            URI,
            OciRef("registry.example.com:5000", "models/iris", tag="v1"),
            "registry.example.com:5000/models/iris:v1",
        ),
        (
            "oci://ghcr.io/acme/models/iris",
            OciRef("ghcr.io", "acme/models/iris"),
            "ghcr.io/acme/models/iris:latest",
        ),
        (
            f"oci://registry.local/iris@{DIGEST}",
            OciRef("registry.local", "iris", digest=DIGEST),
            f"registry.local/iris@{DIGEST}",
        ),
        (
            "oci://[fd00::1]:5000/a.b_c__d--e/f:V_1.0-rc",
            OciRef("[fd00::1]:5000", "a.b_c__d--e/f", tag="V_1.0-rc"),
            "[fd00::1]:5000/a.b_c__d--e/f:V_1.0-rc",
        ),
    ],
)
def test_uri_forms(uri: str, expected: OciRef, image: str) -> None:
    ref = parse_oci_uri(uri, "storageUri")
    assert ref == expected
    assert ref.image == image


def test_hostname_drops_port_and_brackets() -> None:
    assert parse_oci_uri(URI, "f").hostname == "registry.example.com"
    assert parse_oci_uri("oci://[fd00::1]:5000/a", "f").hostname == "fd00::1"
    assert parse_oci_uri("oci://reg/a", "f").hostname == "reg"


def _model(uri: str, **predictor: Any) -> dict[str, Any]:
    model = {"modelFormat": {"name": "onnx"}, "storageUri": uri}
    return {"predictor": {"model": model, **predictor}}


@pytest.mark.parametrize(
    ("uri", "part"),
    [
        ("oci://registry.example.com", "names no repository"),
        ("oci://registry.example.com/", "names no repository"),
        ("oci:///models/iris", "no valid registry host"),
        ("oci://reg:99999/iris", "no valid registry host"),
        ("oci://reg_1/iris", "no valid registry host"),
        ("oci://reg/Models/Iris", "repository 'Models/Iris'"),
        ("oci://reg/models//iris", "repository 'models//iris'"),
        ("oci://reg/iris:-v1", "tag '-v1'"),
        ("oci://reg/iris:" + "v" * 129, "a tag is up to 128"),
        ("oci://reg/iris@sha256:abc", "a digest is sha256: and 64"),
        ("oci://reg/iris@md5:" + "a" * 32, "a digest is sha256:"),
        (f"oci://reg/iris:v1@{DIGEST}", "both a tag and a digest"),
        ("oci://reg/iris?tag=v1", "query, fragment or space"),
        ("OCI://reg/iris", "is not an oci:// URI"),
        ("oci://127.0.0.1:5000/iris", "loopback"),
        ("oci://169.254.169.254/iris", "link-local"),
        ("oci://metadata.google.internal/iris", "cloud metadata"),
    ],
)
def test_bad_uris_say_what_to_fix(uri: str, part: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(isvc(_model(uri)))
    assert info.value.message.startswith("spec.predictor.model.storageUri: ")
    assert part in info.value.message


def test_credentials_in_the_uri_are_refused_without_echoing_them() -> None:
    with pytest.raises(SpecError) as info:
        parse(isvc(_model("oci://robot:hunter2@registry.example.com/models/iris:v1")))
    assert "must not carry credentials" in info.value.message
    assert "imagePullSecrets" in info.value.message
    assert "hunter2" not in info.value.message and "robot" not in info.value.message


def test_canary_oci_uri_is_checked_too() -> None:
    spec = {**_model(URI), "modelfleet": {"canary": {"storageUri": "oci://reg/Bad"}}}
    with pytest.raises(SpecError, match=r"spec\.modelfleet\.canary\.storageUri: .*repository"):
        parse(isvc(spec))


@pytest.mark.parametrize(
    ("spec", "part"),
    [
        (
            {**_model("s3://models/iris"), "modelfleet": {"ociDelivery": "ImageVolume"}},
            "spec.predictor.model.storageUri is s3://",
        ),
        (
            {
                **_model(URI),
                "modelfleet": {"ociDelivery": "ImageVolume", "canary": {"storageUri": "gs://b/m"}},
            },
            "spec.modelfleet.canary.storageUri is gs://",
        ),
        (
            {**_model(URI), "modelfleet": {"ociDelivery": "imagevolume"}},
            "spec.modelfleet.ociDelivery: Input should be 'Auto', 'Pull' or 'ImageVolume'",
        ),
        (
            {
                **_model(URI),
                "modelfleet": {"versionPolicy": {"policy": "specific", "versions": [2]}},
            },
            "spec.modelfleet.versionPolicy: an oci:// model is served as version 1 only",
        ),
        (
            {
                **_model("s3://models/iris"),
                "modelfleet": {
                    "canary": {
                        "storageUri": URI,
                        "versionPolicy": {"policy": "specific", "versions": [1, 2]},
                    }
                },
            },
            "spec.modelfleet.canary.versionPolicy: an oci:// model",
        ),
        (_model(URI, imagePullSecrets=["regcred"]), "spec.predictor.imagePullSecrets.0"),
        (_model(URI, imagePullSecrets=[{"name": ""}]), "imagePullSecrets.0.name"),
    ],
)
def test_delivery_errors(spec: dict[str, Any], part: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(isvc(spec))
    assert part in info.value.message


def test_specific_version_1_of_an_oci_model_is_fine() -> None:
    spec = {**_model(URI), "modelfleet": {"versionPolicy": {"policy": "specific", "versions": [1]}}}
    assert parse(isvc(spec)).spec.modelfleet.oci_delivery == "Auto"


def _schema() -> dict[str, Any]:
    return dict(build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def test_crd_admits_the_fields_and_refuses_an_unknown_delivery() -> None:
    body = isvc({**_model(URI, imagePullSecrets=[{"name": "r"}]), "modelfleet": {}})
    for delivery in ("Auto", "Pull", "ImageVolume"):
        body["spec"]["modelfleet"]["ociDelivery"] = delivery
        jsonschema.validate(body, _schema())
    body["spec"]["modelfleet"]["ociDelivery"] = "Mount"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, _schema())
    description = _schema()["properties"]["spec"]["properties"]["modelfleet"]["properties"][
        "ociDelivery"
    ]["description"]
    assert "ImageVolume when the API server is 1.35 or newer" in description


# --- render ----------------------------------------------------------------------------------


def _pods(body: dict[str, Any], config: OperatorConfig, **update: Any) -> list[dict[str, Any]]:
    objects = render(parse(body), config.model_copy(update=update))
    return [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]


def _pod(body: dict[str, Any], config: OperatorConfig, **update: Any) -> dict[str, Any]:
    (pod,) = _pods(body, config, **update)
    return pod


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}


def _volumes(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod["volumes"]}


def _mounts(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}


def _with(delivery: str, uri: str = URI, secrets: tuple[str, ...] = ("regcred",)) -> dict[str, Any]:
    pull = [{"name": s} for s in secrets]
    spec = {**_model(uri, imagePullSecrets=pull), "modelfleet": {"ociDelivery": delivery}}
    return isvc(spec)


def test_pull_mounts_the_first_pull_secret_for_the_runtime(config: OperatorConfig) -> None:
    pod = _pod(_with("Pull", secrets=("regcred", "other")), config, server_version="v1.37.2")
    env = _env(pod)
    assert env["MODELFLEET_MODEL_URI"] == URI
    assert env["MODELFLEET_REGISTRY_CONFIG"] == "/var/run/secrets/modelfleet/registry/config.json"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]
    volume = _volumes(pod)["registry-credentials"]
    assert volume["secret"] == {
        "secretName": "regcred",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
        "defaultMode": 0o440,
    }
    assert _mounts(pod)["registry-credentials"] == {
        "name": "registry-credentials",
        "mountPath": "/var/run/secrets/modelfleet/registry",
        "readOnly": True,
    }
    assert "model" not in _volumes(pod)
    assert "emptyDir" in _volumes(pod)["models"]  # the runtime's model cache, as before


def test_pull_without_pull_secrets_mounts_nothing(config: OperatorConfig) -> None:
    pod = _pod(_with("Pull", secrets=()), config)
    assert "MODELFLEET_REGISTRY_CONFIG" not in _env(pod)
    assert "imagePullSecrets" not in pod
    assert set(_volumes(pod)) == {"models", "tmp", "model-cache"}  # no credentials volume


@pytest.mark.parametrize(
    ("uri", "reference"),
    [
        (URI, "registry.example.com:5000/models/iris:v1"),
        ("oci://registry.example.com/iris", "registry.example.com/iris:latest"),
        (f"oci://registry.example.com/iris@{DIGEST}", f"registry.example.com/iris@{DIGEST}"),
    ],
)
def test_image_volume_mounts_the_model_read_only(
    uri: str, reference: str, config: OperatorConfig
) -> None:
    pod = _pod(_with("ImageVolume", uri), config)
    assert _volumes(pod)["model"] == {
        "name": "model",
        "image": {"reference": reference, "pullPolicy": "IfNotPresent"},
    }
    assert _mounts(pod)["model"] == {"name": "model", "mountPath": "/mnt/models", "readOnly": True}
    env = _env(pod)
    assert env["MODELFLEET_MODEL_URI"] == "/mnt/models"
    assert "MODELFLEET_REGISTRY_CONFIG" not in env  # the kubelet pulls, with the pod's secrets
    assert "registry-credentials" not in _volumes(pod)
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


@pytest.mark.parametrize(
    ("server_version", "expected"),
    [
        (None, "Pull"),
        ("v1.30.0", "Pull"),
        ("v1.34.9-eks-1a2b", "Pull"),
        ("v1.35.0", "ImageVolume"),
        ("1.36", "ImageVolume"),
        ("v1.37.2", "ImageVolume"),
        ("v2.0.0", "ImageVolume"),
    ],
)
def test_auto_follows_the_server_version(
    server_version: str | None, expected: str, config: OperatorConfig
) -> None:
    pod = _pod(_with("Auto"), config, server_version=server_version)
    assert ("model" in _volumes(pod)) == (expected == "ImageVolume")
    assert ("registry-credentials" in _volumes(pod)) == (expected == "Pull")


def test_other_schemes_download_whatever_the_server(config: OperatorConfig) -> None:
    body = isvc(_model("s3://models/iris", imagePullSecrets=[{"name": "regcred"}]))
    pod = _pod(body, config, server_version="v1.37.2")
    assert set(_volumes(pod)) == {"models", "tmp", "model-cache"}  # no image volume
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]  # for the runtime image
    assert "MODELFLEET_REGISTRY_CONFIG" not in _env(pod)


def test_each_track_gets_its_own_delivery(config: OperatorConfig) -> None:
    spec = {
        **_model("s3://models/iris", canaryTrafficPercent=20, minReplicas=5),
        "modelfleet": {"canary": {"storageUri": URI}},
    }
    stable, canary = _pods(isvc(spec), config, server_version="v1.37.2")
    assert "model" not in _volumes(stable)
    assert _volumes(canary)["model"]["image"]["reference"].endswith("models/iris:v1")


CASES = {
    "pull": (_with("Pull"), {}),
    "image-volume": (_with("ImageVolume", f"oci://registry.example.com/iris@{DIGEST}"), {}),
    "auto-1.37": (_with("Auto"), {"server_version": "v1.37.2"}),
}


@pytest.mark.parametrize("case", CASES)
def test_pods_are_restricted_and_valid_kubernetes(case: str, config: OperatorConfig) -> None:
    body, update = CASES[case]
    objects = render(parse(copy.deepcopy(body)), config.model_copy(update=update))
    for obj in objects:
        if obj["kind"] == "Deployment":
            assert restricted_violations(obj["spec"]["template"]["spec"]) == []
            assert obj["spec"]["template"]["spec"]["containers"][0]["securityContext"][
                "readOnlyRootFilesystem"
            ]
        if obj["kind"] not in ("ScaledObject", "HTTPRoute"):
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("case", CASES)
def test_env_is_what_the_runtime_reads(
    case: str, config: OperatorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, update = CASES[case]
    env = _env(_pod(copy.deepcopy(body), config, **update))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.model_uri == env["MODELFLEET_MODEL_URI"]
    if "MODELFLEET_REGISTRY_CONFIG" in env:
        assert str(settings.registry_config) == env["MODELFLEET_REGISTRY_CONFIG"]


# --- the server version ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "version"),
    [
        ({"major": "1", "minor": "37", "gitVersion": "v1.37.2"}, "v1.37.2"),
        ({"major": "1", "minor": "35+", "gitVersion": "v1.35.3-gke.1200"}, "v1.35.3-gke.1200"),
        ({"major": "1", "minor": "34+", "gitVersion": "custom-build"}, "1.34"),
    ],
)
def test_version_from_the_api_servers_answer(info: dict[str, str], version: str) -> None:
    assert version_from_info(info) == version


def test_unreadable_versions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        version_from_info({"gitVersion": "dev"})
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        version_tuple("latest")
    monkeypatch.setenv("MODELFLEET_OPERATOR_SERVER_VERSION", "one.two")
    with pytest.raises(ValueError, match="server_version"):
        OperatorConfig()
    monkeypatch.setenv("MODELFLEET_OPERATOR_SERVER_VERSION", "v1.34.2")
    assert OperatorConfig().server_version == "v1.34.2"


@pytest.mark.usefixtures("config")  # no MODELFLEET_OPERATOR_* from the test run's environment
def test_render_cli_takes_the_server_version(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(EXAMPLES / "oci.yaml")
    assert render_command(["-f", path, "--server-version", "v1.37.2"]) == 0
    out, err = capsys.readouterr()
    (dep, *_) = yaml.safe_load_all(out)
    assert "model" in _volumes(dep["spec"]["template"]["spec"]) and err == ""
    assert render_command(["-f", path]) == 0
    out, err = capsys.readouterr()
    (dep, *_) = yaml.safe_load_all(out)
    assert "registry-credentials" in _volumes(dep["spec"]["template"]["spec"])
    assert "note: iris-oci: ociDelivery Auto rendered as Pull" in err
    with pytest.raises(SystemExit) as exited:
        render_command(["-f", path, "--server-version", "latest"])
    assert exited.value.code == 2
    assert "not a Kubernetes version" in capsys.readouterr().err
