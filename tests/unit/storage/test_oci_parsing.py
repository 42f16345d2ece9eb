"""Pure parts of oci:// storage: URI parsing, Docker config credentials, WWW-Authenticate
challenges, manifest checks, the reproducible layer, and the flat-folder version."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from modelfleet_runtime.config import Settings
from modelfleet_runtime.schemes import OciRef
from modelfleet_runtime.storage.base import (
    AccessDeniedError,
    InvalidUriError,
    ObjectInfo,
    StorageError,
)
from modelfleet_runtime.storage.oci import parse_reference
from modelfleet_runtime.storage.oci_auth import (
    Challenge,
    Credentials,
    default_config_path,
    load_credentials,
    parse_challenges,
    pick,
)
from modelfleet_runtime.storage.oci_image import build_layer, parse_image, pick_manifest
from modelfleet_runtime.storage.uri import parse_uri
from modelfleet_runtime.storage.versions import flat_version

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("oci://r.example/models/iris", OciRef("r.example", "models/iris")),
        (
            "oci://127.0.0.1:5000/iris:v1.2_rc-3",
            OciRef("127.0.0.1:5000", "iris", tag="v1.2_rc-3"),
        ),
        (
            f"oci://R.example:443/a/b/c@sha256:{HEX}",
            OciRef("r.example:443", "a/b/c", digest=f"sha256:{HEX}"),
        ),
        ("oci://h/my__ns/my-model.x:latest", OciRef("h", "my__ns/my-model.x", tag="latest")),
    ],
)
def test_references(uri: str, expected: OciRef) -> None:
    assert parse_reference(parse_uri(uri)) == expected


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("oci://h", "no repository"),
        ("oci://h/", "no repository"),
        ("oci://h/Models/iris", "repository 'Models/iris'"),
        ("oci://h/iris:.bad", "tag '.bad'"),
        ("oci://h/iris:" + "t" * 129, "tag"),
        ("oci://h/iris@sha256:abc", "digest 'sha256:abc'"),
        (f"oci://h/iris@sha512:{HEX}{HEX}", "digest"),
        (f"oci://h/iris:v1@sha256:{HEX}", "both a tag and a digest"),
        ("oci://h/iris?x=1", "no query"),
        ("oci://h/a//b", "repository 'a//b'"),
    ],
)
def test_bad_references(uri: str, why: str) -> None:
    with pytest.raises(InvalidUriError, match=why):
        parse_reference(parse_uri(uri))


def test_credentials_in_a_uri_are_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidUriError) as caught:
        parse_uri("oci://user:hunter2@r.example/iris")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("oci://h/models/iris:v1", "iris"),
        (f"oci://h:5000/models/iris@sha256:{HEX}", "iris"),
        ("oci://h:5000/resnet", "resnet"),
    ],
)
def test_the_model_is_named_after_the_repository(uri: str, name: str) -> None:
    assert Settings(model_uri=uri).model_name == name


def test_oci_is_allowed_by_default() -> None:
    assert "oci" in Settings().allowed_schemes


def _config(tmp: Path, auths: dict[str, object]) -> Path:
    path = tmp / "config.json"
    path.write_text(json.dumps({"auths": auths, "credsStore": "desktop"}))
    return path


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_from_a_docker_config(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        {
            "https://R.example:5000/v1/": {"auth": _auth("u", "p:with:colons")},
            "other.example": {"username": "o", "password": "q"},
            "docker.io": {"auth": _auth("hub", "h")},
        },
    )
    assert load_credentials(path, "r.example:5000") == Credentials("u", "p:with:colons")
    assert load_credentials(path, "other.example") == Credentials("o", "q")
    assert load_credentials(path, "registry-1.docker.io") == Credentials("hub", "h")
    assert load_credentials(path, "r.example") is None  # another port is another registry
    assert "p:with" not in repr(load_credentials(path, "r.example:5000"))


@pytest.mark.parametrize("content", ["{not json", json.dumps({"auths": {"h": {"auth": "!!"}}})])
def test_a_broken_docker_config_is_refused_without_quoting_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(AccessDeniedError) as caught:
        load_credentials(path, "h")
    assert content not in str(caught.value) and "!!" not in str(caught.value)


def test_the_default_docker_config(tmp_path: Path) -> None:
    assert default_config_path({"DOCKER_CONFIG": str(tmp_path)}) is None
    _config(tmp_path, {})
    assert default_config_path({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path / "config.json"


def test_challenges() -> None:
    found = parse_challenges(
        [
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:a/b:pull,push"',
            'Basic realm="with \\"quotes\\", and commas", Newscheme token68value',
        ]
    )
    assert found == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:a/b:pull,push",
            },
        ),
        Challenge("basic", {"realm": 'with "quotes", and commas'}),
        Challenge("newscheme", {}),
    ]
    assert pick(found) == found[0]
    assert pick(found[1:]) == found[1]
    assert pick([Challenge("negotiate", {})]) is None
    assert parse_challenges(["Basic realm=unquoted,charset=UTF-8"]) == [
        Challenge("basic", {"realm": "unquoted", "charset": "UTF-8"})
    ]
    assert parse_challenges(["", "  ", '=broken"']) == []


def _manifest(**fields: object) -> bytes:
    descriptor = {"mediaType": "x", "digest": f"sha256:{HEX}", "size": 1}
    layer = descriptor | {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
    base = {"schemaVersion": 2, "config": descriptor, "layers": [layer]}
    return json.dumps(base | fields).encode()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"[]", "not a JSON object"),
        (_manifest(schemaVersion=1), "unsupported manifest"),
        (_manifest(layers=[]), "0 layers"),
        (_manifest(config={"digest": "md5:x", "size": 1}), "not sha256"),
        (_manifest(config={"digest": f"sha256:{HEX}", "size": -1}), "no valid size"),
    ],
)
def test_manifests_that_are_no_model_image(data: bytes, why: str) -> None:
    with pytest.raises(StorageError, match=why):
        parse_image(data, f"sha256:{HEX}", "oci://h/r")


def test_an_index_without_linux_amd64_is_refused() -> None:
    entry = {
        "digest": f"sha256:{HEX}",
        "size": 1,
        "platform": {"os": "linux", "architecture": "arm64"},
    }
    index = json.dumps({"manifests": [entry, entry]}).encode()
    with pytest.raises(StorageError, match="none for linux/amd64"):
        pick_manifest(index, "oci://h/r")
    assert pick_manifest(json.dumps({"manifests": [entry]}).encode(), "w").digest == f"sha256:{HEX}"


def test_the_pushed_layer_is_reproducible(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"model")
    (tmp_path / "w.bin").write_bytes(b"weights" * 1000)
    (tmp_path / "w.bin").chmod(0o600)
    files = {"w.bin": tmp_path / "w.bin", "model.onnx": tmp_path / "model.onnx"}
    first, diff_id = build_layer(files, tmp_path / "a.tar.gz", where="t")
    (tmp_path / "model.onnx").touch()  # a new mtime changes nothing
    again, _ = build_layer(dict(reversed(files.items())), tmp_path / "b.tar.gz", where="t")
    assert (
        first == again
        and (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    )
    raw = gzip.decompress((tmp_path / "a.tar.gz").read_bytes())
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["model.onnx", "w.bin"]
    assert {(m.mode, m.uid, m.gid, m.mtime, m.uname, m.type) for m in members} == {
        (0o644, 0, 0, 0, "", tarfile.REGTYPE)
    }


def test_a_pushed_name_must_be_relative(tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"x")
    with pytest.raises(StorageError, match="'..' path segment"):
        build_layer({"../model.onnx": tmp_path / "m"}, tmp_path / "l", where="t")


def _objects(*keys: str) -> list[ObjectInfo]:
    return [ObjectInfo(key, 1, "e") for key in keys]


def test_a_flat_folder_is_version_one() -> None:
    flat = flat_version(_objects("model.onnx", "w.bin", "modelfleet.json", "sub/x"), where="w")
    assert flat is not None and flat.number == 1
    assert sorted(f.path for f in flat.files) == ["model.onnx", "modelfleet.json", "sub/x", "w.bin"]
    # Numbered folders make a repository, even beside a model.onnx; no model.onnx, no version.
    assert flat_version(_objects("model.onnx", "1/model.onnx"), where="w") is None
    assert flat_version(_objects("w.bin", "sub/model.onnx"), where="w") is None
