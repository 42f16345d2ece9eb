"""``oci://`` models on a real registry (Debian's docker-registry: TLS, htpasswd basic auth):
push with the runtime's ``push``, serve through a real ``modelfleet serve``, predict; tags,
digests, a moved tag, wrong credentials, unknown names, a tampered blob, an untrusted CA."""

from __future__ import annotations

import io
import json
import re
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest

from modelfleet_runtime.storage import (
    AccessDeniedError,
    IntegrityError,
    NotFoundError,
    StorageError,
    open_source,
)
from modelfleet_runtime.storage.oci import push
from tests.helpers import onnx_models
from tests.helpers.registry import Registry, write_docker_config
from tests.helpers.runtime import Served, serve_process, wait_until

from .oci_helpers import oci_settings, push_adder

BODY = {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}


def answer(served: Served, name: str = "adder") -> list[float]:
    response = httpx.post(f"{served.url}/v2/models/{name}/infer", json=BODY, timeout=10)
    assert response.status_code == 200, response.text
    data: list[float] = response.json()["outputs"][0]["data"]
    return data


def requests_seen(registry: Registry, method: str, path: str) -> int:
    """How many ``method`` requests to URIs containing ``path`` the registry has logged, once
    it has logged a request sent now (its log lines may trail its answers)."""
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    with registry.client() as client:
        client.get(f"/v2/{sentinel}/tags/list")
    wait_until(lambda: sentinel in registry.log.read_text(), 10, "the registry's log")
    pattern = re.compile(rf'http\.request\.method={method} .*http\.request\.uri="?[^" ]*{path}')
    lines = registry.log.read_text().splitlines()
    return sum(1 for line in lines if "response completed" in line and pattern.search(line))


def test_push_then_serve_by_tag_and_by_digest(registry: Registry, tmp_path: Path) -> None:
    uri = registry.uri("models/adder", "v1")
    pinned = push_adder(tmp_path, registry, uri, 1.0)
    assert re.fullmatch(rf"oci://{registry.host}/models/adder@sha256:[0-9a-f]{{64}}", pinned)
    uploads = requests_seen(registry, "POST", "/blobs/uploads/")
    assert uploads == 2  # the layer and the config
    # The same files again make the same image (a reproducible layer), and no blob is sent.
    assert push_adder(tmp_path, registry, uri, 1.0) == pinned
    assert requests_seen(registry, "POST", "/blobs/uploads/") == uploads
    for model_uri in (uri, pinned):
        args = ["--model-uri", model_uri, "--poll-interval", "0.3"]
        with serve_process(tmp_path, *args, env=registry.env()) as served:
            assert answer(served) == [1.0] * 4
            metadata = httpx.get(f"{served.url}/v2/models/adder").json()
            assert metadata["versions"] == ["1"]
    # Tag and digest name one image: one promoted folder, of the image's files alone.
    folders = list((tmp_path / "model-cache").glob("adder/*"))
    assert [p.name for p in folders[0].iterdir()] == ["model.onnx"] and len(folders) == 1


def test_a_moved_tag_is_swapped_in(registry: Registry, tmp_path: Path) -> None:
    uri = registry.uri("models/adder")  # :latest
    push_adder(tmp_path, registry, uri, 1.0)
    args = ["--model-uri", uri, "--poll-interval", "0.3"]
    with serve_process(tmp_path, *args, env=registry.env()) as served:
        assert answer(served) == [1.0] * 4
        push_adder(tmp_path, registry, uri, 2.0)
        wait_until(lambda: answer(served) == [2.0] * 4, 20, "the image the tag moved to")
        assert httpx.get(f"{served.url}/v2/models/adder").json()["versions"] == ["1"]


async def test_a_pinned_digest_is_never_downloaded_again(
    registry: Registry, tmp_path: Path
) -> None:
    pinned = push_adder(tmp_path, registry, registry.uri("models/adder", "v1"), 1.0)
    config = oci_settings(tmp_path, registry, pinned)
    source = open_source(config)
    listing = await source.list_versions()
    first = await source.fetch(listing[1])
    manifests = requests_seen(registry, "GET", "/manifests/")
    blobs = requests_seen(registry, "GET", "/blobs/")
    assert (manifests, blobs) == (1, 2)
    assert await source.list_versions() == listing  # a poll: no call at all
    restarted = open_source(config)  # a restarted server over the same model_dir
    assert await restarted.fetch((await restarted.list_versions())[1]) == first
    assert requests_seen(registry, "GET", "/blobs/") == blobs
    assert requests_seen(registry, "GET", "/manifests/") == manifests + 1


@pytest.mark.parametrize("config", ["wrong password", "no entry", "no file"])
def test_bad_credentials_are_access_denied_and_never_logged(
    registry: Registry, tmp_path: Path, config: str
) -> None:
    push_adder(tmp_path, registry, registry.uri("models/adder"), 1.0)
    docker_config = tmp_path / "bad-config.json"
    wrong = "not-the-" + registry.password
    host = registry.host if config == "wrong password" else "elsewhere.example:5000"
    write_docker_config(docker_config, host, registry.username, wrong)
    auth = json.loads(docker_config.read_text())["auths"][host]["auth"]
    if config == "no file":
        docker_config = tmp_path / "absent" / "config.json"
    env = registry.env() | {"MODELFLEET_REGISTRY_CONFIG": str(docker_config)}
    args = ["--model-uri", registry.uri("models/adder"), "--poll-interval", "0.3"]
    with serve_process(tmp_path, *args, env=env, wait_ready=False) as served:
        ready = f"{served.url}/v2/models/adder/ready"
        wait_until(lambda: "AccessDenied" in served.output(), 20, "the denial logged")
        assert httpx.get(ready).status_code == 503
        assert "AccessDenied" in httpx.post(f"{served.url}/v2/models/adder/infer", json=BODY).text
    output = served.output()
    hint = {
        "wrong password": f"check the credentials for {registry.host} in {docker_config}",
        "no entry": f"no credentials for {registry.host} in {docker_config}",
        "no file": f"registry config {docker_config} cannot be read",
    }[config]
    assert hint in output
    for secret in (wrong, registry.password, auth):
        assert secret not in output


async def test_unknown_repository_or_tag_is_not_found(registry: Registry, tmp_path: Path) -> None:
    push_adder(tmp_path, registry, registry.uri("models/adder", "v1"), 1.0)
    for uri in (registry.uri("models/nothing", "v1"), registry.uri("models/adder", "v9")):
        with pytest.raises(NotFoundError, match="not found"):
            await open_source(oci_settings(tmp_path, registry, uri)).list_versions()
    digest = "sha256:" + "0" * 64
    source = open_source(oci_settings(tmp_path, registry, registry.uri("models/adder", digest)))
    with pytest.raises(NotFoundError, match="MANIFEST_UNKNOWN"):
        await source.list_versions()


async def test_an_untrusted_certificate_is_refused(registry: Registry, tmp_path: Path) -> None:
    config = oci_settings(tmp_path, registry, registry.uri("models/adder"), registry_ca_file=None)
    with pytest.raises(StorageError, match="registry_ca_file") as caught:
        await open_source(config).list_versions()
    assert caught.value.reason == "TLSError"


def layer_digest(registry: Registry, pinned: str) -> str:
    with registry.client() as client:
        manifest = client.get(
            f"/v2/models/adder/manifests/{pinned.rsplit('@', 1)[1]}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).json()
    digest: str = manifest["layers"][0]["digest"]
    return digest


def test_the_image_unpacked_as_a_volume_serves_as_version_one(
    registry: Registry, tmp_path: Path
) -> None:
    pinned = push_adder(tmp_path, registry, registry.uri("models/adder", "v1"), 1.0)
    layer = registry.blob_file(layer_digest(registry, pinned)).read_bytes()
    folder = tmp_path / "mnt" / "models"  # what a pod's image volume shows
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        tar.extractall(folder, filter="data")
    with serve_process(tmp_path, "--model-uri", str(folder), "--name", "adder") as served:
        assert answer(served) == [1.0] * 4
        assert httpx.get(f"{served.url}/v2/models/adder").json()["versions"] == ["1"]


def tamper(registry: Registry, pinned: str) -> None:
    """Flip one byte of the image's layer where the registry keeps it: it still serves the
    blob under its old digest."""
    blob = registry.blob_file(layer_digest(registry, pinned))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))


def test_a_tampered_blob_is_refused_with_the_reason(registry: Registry, tmp_path: Path) -> None:
    uri = registry.uri("models/adder", "v1")
    tamper(registry, push_adder(tmp_path, registry, uri, 1.0))
    args = ["--model-uri", uri, "--poll-interval", "0.3"]
    with serve_process(tmp_path, *args, env=registry.env(), wait_ready=False) as served:

        def status() -> dict[str, str]:
            index = httpx.post(f"{served.url}/v2/repository/index").json()
            return next((s for s in index if s["version"] == "1"), {})

        wait_until(lambda: status().get("state") == "UNAVAILABLE", 20, "version 1 refused")
        assert status()["reason"] == "IntegrityError"
        assert "do not match its digest" in status()["message"]
        assert httpx.get(f"{served.url}/v2/health/ready").status_code == 503
        # A good image pushed to the tag is a new fingerprint: it is tried, and serves.
        push_adder(tmp_path, registry, uri, 2.0)
        wait_until(lambda: status().get("state") == "READY", 20, "the good image")
        assert answer(served) == [2.0] * 4
    assert not list((tmp_path / "model-cache").glob("adder/.tmp-*"))


async def test_a_tampered_blob_never_replaces_the_serving_image(
    registry: Registry, tmp_path: Path
) -> None:
    uri = registry.uri("models/adder", "v1")
    push_adder(tmp_path, registry, uri, 1.0)
    source = open_source(oci_settings(tmp_path, registry, uri))
    good = await source.fetch((await source.list_versions())[1])
    tamper(registry, push_adder(tmp_path, registry, uri, 2.0))
    with pytest.raises(IntegrityError, match="do not match its digest"):
        await source.fetch((await source.list_versions())[1])
    assert good.is_file() and [p.name for p in good.parent.parent.iterdir()] == [good.parent.name]


async def test_a_wrong_password_refuses_pull_and_push(registry: Registry, tmp_path: Path) -> None:
    password = "not-" + registry.password
    docker_config = write_docker_config(
        tmp_path / "config.json", registry.host, registry.username, password
    )
    uri = registry.uri("models/adder")
    config = oci_settings(tmp_path, registry, uri, registry_config=docker_config)
    with pytest.raises(AccessDeniedError, match="HTTP 401") as pulled:
        await open_source(config).list_versions()
    model = tmp_path / "model.onnx"
    model.write_bytes(onnx_models.add_constant(1.0))
    with pytest.raises(AccessDeniedError, match="HTTP 401") as pushed:
        push(uri, {"model.onnx": model}, config)
    for error in (pulled.value, pushed.value):
        assert registry.password not in str(error) and password not in str(error)
