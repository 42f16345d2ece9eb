"""Images the runtime did not push, on a real registry: layers with unsafe members, a wrong
diff_id, shapes that are no model image, an index, Docker's media types; and the registry
token flow and blob redirects, each against docker-registry configured for it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet_runtime.storage import (
    AccessDeniedError,
    IntegrityError,
    NotAllowedError,
    StorageError,
    UnsafePathError,
    open_source,
)
from tests.helpers import onnx_models
from tests.helpers.registry import Registry, run_registry, write_docker_config
from tests.helpers.registry_servers import TokenIssuer, blob_host, token_issuer
from tests.helpers.tls import make_tls

from .oci_helpers import oci_settings, push_adder

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MODEL = onnx_models.add_constant(3.0)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(
    name: str, data: bytes | None = MODEL, **attrs: Any
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def push_image(
    registry: Registry,
    tag: str,
    tar: bytes,
    *,
    layers: int = 1,
    layer_type: str = LAYER_GZIP,
    manifest_type: str = OCI_MANIFEST,
    diff_id: str | None = None,
) -> dict[str, Any]:
    """Push a one-layer image of ``tar`` by hand to ``models/adder:tag``; return its manifest."""
    blob = gzip.compress(tar) if "gzip" in layer_type else tar
    rootfs = {"type": "layers", "diff_ids": [diff_id or digest(tar)] * layers}
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": rootfs}).encode()
    layer = {
        "mediaType": layer_type,
        "digest": registry.put_blob("models/adder", blob),
        "size": len(blob),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": registry.put_blob("models/adder", config),
            "size": len(config),
        },
        "layers": [layer] * layers,
    }
    registry.put_manifest("models/adder", tag, manifest)
    return manifest


async def fetch(tmp: Path, registry: Registry, tag: str, **overrides: Any) -> Path:
    source = open_source(
        oci_settings(tmp, registry, registry.uri("models/adder", tag), **overrides)
    )
    return await source.fetch((await source.list_versions())[1])


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([member("../model.onnx")], "'..' path segment"),
        ([member("/model.onnx")], "absolute path"),
        ([member("model.onnx", None, type=tarfile.SYMTYPE, linkname="/etc/passwd")], "a link"),
        (
            [member("w.bin"), member("model.onnx", None, type=tarfile.LNKTYPE, linkname="w.bin")],
            "a link",
        ),
        ([member("model.onnx"), member(".wh.weights.bin", b"")], "a whiteout"),
        ([member("model.onnx"), member("sub/.wh..wh..opq", b"")], "a whiteout"),
        ([member("model.onnx"), member("fifo", None, type=tarfile.FIFOTYPE)], "not a file"),
    ],
)
async def test_an_unsafe_layer_is_refused(
    registry: Registry,
    tmp_path: Path,
    members: list[tuple[tarfile.TarInfo, bytes | None]],
    why: str,
) -> None:
    push_image(registry, "unsafe", tar_of(*members))
    with pytest.raises(UnsafePathError, match=why):
        await fetch(tmp_path, registry, "unsafe")
    assert not (tmp_path / "model.onnx").exists()
    assert not list((tmp_path / "models").rglob("model.onnx"))


async def test_a_wrong_diff_id_is_an_integrity_error(registry: Registry, tmp_path: Path) -> None:
    push_image(registry, "v1", tar_of(member("model.onnx")), diff_id=digest(b"other"))
    with pytest.raises(IntegrityError, match="the config says"):
        await fetch(tmp_path, registry, "v1")


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"layers": 2}, "2 layers; a model image has exactly one"),
        ({"layer_type": "application/vnd.oci.image.layer.v1.tar+zstd"}, r"tar\+zstd"),
    ],
)
async def test_what_is_no_model_image_is_refused(
    registry: Registry, tmp_path: Path, options: dict[str, Any], why: str
) -> None:
    push_image(registry, "v1", tar_of(member("model.onnx")), **options)
    with pytest.raises(StorageError, match=why) as caught:
        await fetch(tmp_path, registry, "v1")
    assert caught.value.reason == "InvalidImage"


async def test_docker_media_types_and_a_plain_tar_layer(registry: Registry, tmp_path: Path) -> None:
    docker = "application/vnd.docker.distribution.manifest.v2+json"
    rootfs = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    tar = tar_of(member("adder/adder.onnx"))  # a folder and a name of its own, as archives may
    push_image(registry, "docker", tar, manifest_type=docker, layer_type=rootfs)
    assert (await fetch(tmp_path, registry, "docker")).read_bytes() == MODEL
    push_image(registry, "plain", tar, layer_type="application/vnd.oci.image.layer.v1.tar")
    assert (await fetch(tmp_path, registry, "plain")).read_bytes() == MODEL


async def test_an_index_is_followed_to_linux_amd64(registry: Registry, tmp_path: Path) -> None:
    amd64 = push_image(registry, "amd64", tar_of(member("model.onnx")))
    other = push_image(registry, "arm64", tar_of(member("model.onnx", b"not for this machine")))

    def entry(manifest: dict[str, Any], arch: str) -> dict[str, Any]:
        body = json.dumps(manifest).encode()
        platform = {"os": "linux", "architecture": arch}
        return {
            "mediaType": OCI_MANIFEST,
            "digest": digest(body),
            "size": len(body),
            "platform": platform,
        }

    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(other, "arm64"), entry(amd64, "amd64")],
    }
    registry.put_manifest("models/adder", "multi", index)
    assert (await fetch(tmp_path, registry, "multi")).read_bytes() == MODEL


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[Registry, TokenIssuer]]:
    """A registry that sends clients to a token issuer (the Docker Hub way)."""
    tls = make_tls(tmp_path / "tls")
    with token_issuer(tmp_path, tls, "robot", "s3cret-token-pw") as (issuer, auth):
        with run_registry(tmp_path / "registry", token_auth=auth, tls=tls) as registry:
            write_docker_config(registry.docker_config, registry.host, "robot", "s3cret-token-pw")
            yield registry, issuer


async def test_the_token_flow(token_registry: tuple[Registry, TokenIssuer], tmp_path: Path) -> None:
    registry, issuer = token_registry
    uri = registry.uri("models/adder", "v1")
    pinned = push_adder(tmp_path, registry, uri, 1.0)
    assert (await fetch(tmp_path, registry, pinned.rsplit("@", 1)[1])).is_file()
    scopes = [scope for r in issuer.requests for scope in r["query"].get("scope", [])]
    assert "repository:models/adder:pull,push" in scopes  # the push
    assert "repository:models/adder:pull" in scopes  # the pull
    assert {r["user"] for r in issuer.requests} == {"robot"}
    wrong = write_docker_config(tmp_path / "wrong.json", registry.host, "robot", "wrong-pw")
    with pytest.raises(AccessDeniedError, match="check the credentials") as caught:
        await fetch(tmp_path, registry, "v1", registry_config=wrong)
    assert "wrong-pw" not in str(caught.value)


async def test_blobs_redirected_to_another_host(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    storage = tmp_path / "registry" / "storage"
    with (
        blob_host(storage, tls) as host,
        run_registry(tmp_path / "registry", redirect=host.url, tls=tls) as registry,
    ):
        push_adder(tmp_path, registry, registry.uri("models/adder", "v1"), 1.0)
        assert (await fetch(tmp_path, registry, "v1")).is_file()
        fetched = [r for r in host.requests if r.startswith("GET /docker/registry/v2/blobs/")]
        assert len(fetched) == 2  # the config and the layer, from the blob host
        assert host.authorizations == []  # the registry's credentials stay with the registry
        only_registry = {"allowed_hosts": [registry.host], "model_dir": tmp_path / "other"}
        with pytest.raises(NotAllowedError, match="not in allowed_hosts"):
            await fetch(tmp_path, registry, "v1", **only_registry)
