"""file://, plain paths, http(s):// and gs:// (against gcp-storage-emulator), each through
``open_source`` as the model repository uses it."""

from __future__ import annotations

import json
import logging
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from modelfleet_runtime.models.onnx import ModelLoadError, OnnxModel
from modelfleet_runtime.storage import (
    AccessDeniedError,
    NotFoundError,
    UnsafePathError,
    open_source,
)
from tests.helpers.onnx_models import add_constant, write_repository

from .helpers import (
    RecordingProxy,
    external_data_model,
    gcs_upload_folder,
    settings,
    static_http_server,
)


def _run(path: Path, weights: np.ndarray) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.ones((1, weights.size), dtype=np.float32)
    np.testing.assert_array_equal(session.run(None, {"input0": x})[0], x + weights)


@pytest.mark.parametrize("form", ["plain path", "file uri"])
async def test_local_repository(tmp_path: Path, form: str) -> None:
    repo = write_repository(tmp_path / "pvc" / "iris", {1: add_constant(1), 3: add_constant(3)})
    weights = external_data_model(repo / "4", floats=1000)
    uri = str(repo) if form == "plain path" else f"file://{repo}"
    source = open_source(settings(tmp_path, uri))

    versions = await source.list_versions()
    assert sorted(versions) == [1, 3, 4]
    assert (await source.fetch(versions[3])).read_bytes() == (
        repo / "3" / "model.onnx"
    ).read_bytes()
    path = await source.fetch(versions[4])
    assert (path.parent / "weights.bin").is_file()
    assert path.is_relative_to(tmp_path / "models")
    _run(path, weights)


async def test_local_single_file(tmp_path: Path) -> None:
    model = tmp_path / "pvc" / "iris.onnx"
    model.parent.mkdir()
    model.write_bytes(add_constant(2))
    source = open_source(settings(tmp_path, str(model)))
    versions = await source.list_versions()
    assert list(versions) == [1]
    assert (await source.fetch(versions[1])).read_bytes() == model.read_bytes()


async def test_one_file_whose_external_data_stays_behind_says_to_serve_its_folder(
    tmp_path: Path,
) -> None:
    weights = external_data_model(tmp_path / "pvc", floats=1000)
    configured = settings(tmp_path, str(tmp_path / "pvc" / "model.onnx"))
    source = open_source(configured)
    path = await source.fetch((await source.list_versions())[1])
    with pytest.raises(ModelLoadError, match="give the folder that holds the model"):
        OnnxModel.load("m", 1, path, configured)

    folder = open_source(settings(tmp_path, str(tmp_path / "pvc")))  # the folder: it serves
    _run(await folder.fetch((await folder.list_versions())[1]), weights)


async def test_local_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside")
    repo = write_repository(tmp_path / "pvc", {1: add_constant(1)})
    (repo / "1" / "weights.bin").symlink_to(secret)
    source = open_source(settings(tmp_path, str(repo)))
    with pytest.raises(UnsafePathError, match="outside"):
        await source.list_versions()
    assert not (tmp_path / "models").exists()


async def test_local_missing_folder_is_not_found(tmp_path: Path) -> None:
    source = open_source(settings(tmp_path, str(tmp_path / "nothing")))
    with pytest.raises(NotFoundError):
        await source.list_versions()


@pytest.mark.parametrize("scheme", ["file", "http"])
async def test_archive_with_external_data(tmp_path: Path, scheme: str) -> None:
    """A .tgz of a folder (model plus weights.bin) from a local path and over HTTP (the https
    store, on loopback)."""
    weights = external_data_model(tmp_path / "pack" / "iris", floats=1000)
    served = tmp_path / "www"
    served.mkdir()
    with tarfile.open(served / "iris.tgz", "w:gz") as tar:
        tar.add(tmp_path / "pack" / "iris", arcname="iris")
    with static_http_server(served) as base:
        uri = f"{base}/iris.tgz" if scheme == "http" else f"file://{served}/iris.tgz"
        source = open_source(settings(tmp_path, uri))
        versions = await source.list_versions()
        path = await source.fetch(versions[1])
    assert list(versions) == [1]
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "weights.bin"]
    _run(path, weights)


async def test_http_single_file_keeps_the_query_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = tmp_path / "www"
    served.mkdir()
    blob = add_constant(4)
    (served / "iris.onnx").write_bytes(blob)
    canary = "CANARY-presigned-9f86d081884c7d65"
    caplog.set_level(logging.DEBUG)
    with static_http_server(served) as base:
        source = open_source(settings(tmp_path, f"{base}/iris.onnx?X-Amz-Signature={canary}"))
        versions = await source.list_versions()
        path = await source.fetch(versions[1])
        missing = open_source(settings(tmp_path, f"{base}/gone.onnx?X-Amz-Signature={canary}"))
        with pytest.raises(NotFoundError) as caught:
            await missing.list_versions()

    assert list(versions) == [1] and path.read_bytes() == blob
    assert canary not in source.uri and canary not in str(caught.value)
    assert caplog.records
    assert not [r for r in caplog.records if canary in r.getMessage() + str(r.exc_text)]


async def test_gcs_public_repository_in_ranges(gcs_emulator: str, tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", {1: add_constant(1)})
    weights = external_data_model(repo / "2")  # 3 MiB weights.bin
    gcs_upload_folder(gcs_emulator, "kfserving-examples", repo, "models/onnx")
    port = int(gcs_emulator.rsplit(":", 1)[1])
    proxy = RecordingProxy(("127.0.0.1", port))
    try:
        s = settings(
            tmp_path,
            "gs://kfserving-examples/models/onnx",
            gcs_endpoint_url=proxy.url,
            download_part_size=1024 * 1024,
        )
        source = open_source(s)
        versions = await source.list_versions()
        path = await source.fetch(versions[2])
    finally:
        proxy.close()
    assert sorted(versions) == [1, 2]
    assert proxy.count(b"\r\nrange: bytes=") >= 3
    assert proxy.count(b"authorization:") == 0  # anonymous
    _run(path, weights)


async def test_gcs_single_file(gcs_emulator: str, tmp_path: Path) -> None:
    folder = tmp_path / "up"
    folder.mkdir()
    (folder / "iris.onnx").write_bytes(add_constant(6))
    gcs_upload_folder(gcs_emulator, "public", folder, "m")
    source = open_source(
        settings(tmp_path, "gs://public/m/iris.onnx", gcs_endpoint_url=gcs_emulator)
    )
    versions = await source.list_versions()
    assert (await source.fetch(versions[1])).read_bytes() == (folder / "iris.onnx").read_bytes()


class _TokenHandler(BaseHTTPRequestHandler):
    """An OAuth token endpoint: answers a service-account JWT grant with ``server.token``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        token: str | None = getattr(self.server, "token", None)
        status, body = (200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})
        if token is None:
            status, body = 400, {"error": "invalid_grant", "error_description": "bad key"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[ThreadingHTTPServer]:
    """A token endpoint on 127.0.0.1; set ``.token`` (None refuses every grant)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _service_account_key(path: Path, token_uri: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "reader@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return path


@pytest.mark.parametrize("granted", [True, False])
async def test_gcs_private_with_service_account(
    gcs_emulator: str,
    token_server: ThreadingHTTPServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    granted: bool,
) -> None:
    canary = "ya29.CANARY-token-2c26b46b68ffc68f"
    token_server.token = canary if granted else None  # type: ignore[attr-defined]
    token_uri = f"http://127.0.0.1:{token_server.server_address[1]}/token"
    key = _service_account_key(tmp_path / "key.json", token_uri)
    repo = write_repository(tmp_path / "repo", {1: add_constant(1)})
    gcs_upload_folder(gcs_emulator, "private", repo, "iris")
    proxy = RecordingProxy(("127.0.0.1", int(gcs_emulator.rsplit(":", 1)[1])))
    caplog.set_level(logging.DEBUG)
    try:
        s = settings(
            tmp_path, "gs://private/iris", gcs_endpoint_url=proxy.url, gcs_credentials_file=key
        )
        source = open_source(s)
        if granted:
            path = await source.fetch((await source.list_versions())[1])
            assert path.read_bytes() == (repo / "1" / "model.onnx").read_bytes()
        else:
            with pytest.raises(AccessDeniedError, match="check credentials") as caught:
                await source.list_versions()
            assert canary not in str(caught.value)
    finally:
        proxy.close()
    assert proxy.count(f"authorization: bearer {canary}".encode()) == (2 if granted else 0)
    assert not [r for r in caplog.records if canary in r.getMessage() + str(r.exc_text)]
