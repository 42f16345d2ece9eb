"""s3:// failure cases against moto's S3 server: missing objects, path escapes, invalid
version names, wrong credentials (no secret leaks) and a store that goes down (RELIABILITY
S8, S9, S10)."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from pathlib import Path

import moto.settings
import pytest

from modelfleet_runtime.storage import (
    AccessDeniedError,
    NotFoundError,
    RemoteFile,
    RemoteVersion,
    UnavailableError,
    UnsafePathError,
    open_source,
)
from tests.helpers.aws import iam_key_id
from tests.helpers.onnx_models import add_constant

from .conftest import MotoS3
from .helpers import settings

RETRY_LOGGER = "modelfleet_runtime.storage.retry"


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if not p.is_dir()) if folder.exists() else []


async def test_missing_key_and_bucket_are_not_found(
    moto_server: MotoS3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = open_source(
        settings(tmp_path, "s3://models/none/iris.onnx", s3_endpoint_url=moto_server.endpoint)
    )
    with pytest.raises(NotFoundError, match=r"s3://models/none/iris\.onnx"):
        await source.list_versions()
    source = open_source(
        settings(tmp_path, "s3://no-such-bucket/repo", s3_endpoint_url=moto_server.endpoint)
    )
    with pytest.raises(NotFoundError, match="NoSuchBucket"):
        await source.list_versions()
    assert [r for r in caplog.records if r.name == RETRY_LOGGER] == []  # not retried


@pytest.mark.parametrize(
    "bad_key",
    [
        "repo/1/../../../sentinel",
        "repo/1/sub/../../../../sentinel",
        "repo//abs/model.onnx",
        "repo/1/..\\..\\sentinel",
        "repo/../sentinel",
    ],
)
async def test_escaping_keys_are_refused(moto_server: MotoS3, tmp_path: Path, bad_key: str) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.write_bytes(b"untouched")
    before = sentinel.stat().st_mtime_ns
    moto_server.client.put_object(Bucket="models", Key="repo/1/model.onnx", Body=add_constant(1))
    moto_server.client.put_object(Bucket="models", Key=bad_key, Body=b"evil")
    source = open_source(
        settings(tmp_path, "s3://models/repo", s3_endpoint_url=moto_server.endpoint)
    )

    with pytest.raises(UnsafePathError, match="refusing key"):
        await source.list_versions()

    assert sentinel.read_bytes() == b"untouched" and sentinel.stat().st_mtime_ns == before
    assert _files_under(tmp_path) == [sentinel]


@pytest.mark.parametrize("bad_path", ["../../sentinel", "/sentinel", "a/../../sentinel", "a\\b"])
async def test_fetch_refuses_escaping_paths(
    moto_server: MotoS3, tmp_path: Path, bad_path: str
) -> None:
    """The containment check at fetch time, independent of the listing's."""
    sentinel = tmp_path / "sentinel"
    sentinel.write_bytes(b"untouched")
    moto_server.client.put_object(Bucket="models", Key="repo/1/model.onnx", Body=add_constant(1))
    source = open_source(
        settings(tmp_path, "s3://models/repo", s3_endpoint_url=moto_server.endpoint)
    )
    listed = (await source.list_versions())[1]
    forged = RemoteVersion(1, (*listed.files, RemoteFile(bad_path, 4, "x")))

    with pytest.raises(UnsafePathError):
        await source.fetch(forged)
    assert sentinel.read_bytes() == b"untouched"
    assert _files_under(tmp_path) == [sentinel]


async def test_invalid_version_names(
    moto_server: MotoS3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blob = add_constant(1)
    names = ["0", "01", "1.5", "-2", " 3", "v4", "7", "docs", "1e3"]
    for name in names:
        moto_server.client.put_object(Bucket="models", Key=f"repo/{name}/model.onnx", Body=blob)
    source = open_source(
        settings(tmp_path, "s3://models/repo", s3_endpoint_url=moto_server.endpoint)
    )

    with caplog.at_level(logging.WARNING):
        versions = await source.list_versions()

    assert list(versions) == [7]
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ["0", "01", "1.5", "-2", " 3", "v4", "1e3"]:
        assert repr(name) in warned
    assert "'docs'" not in warned
    for number in (0, -1):
        with pytest.raises(UnsafePathError):
            await source.fetch(RemoteVersion(number, versions[7].files))


@pytest.mark.parametrize("wrong", ["secret", "key id"])
async def test_wrong_credentials_never_leak(
    moto_server: MotoS3,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    wrong: str,
) -> None:
    moto_server.client.put_object(Bucket="models", Key="repo/1/model.onnx", Body=add_constant(1))
    key_id = iam_key_id(moto_server.endpoint)
    canary = "CANARY-d41d8cd98f00b204e9800998ecf8427e"
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # enforce auth
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id if wrong == "secret" else "AKIANOSUCHKEY0000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", canary)
    caplog.set_level(logging.DEBUG)

    source = open_source(
        settings(tmp_path, "s3://models/repo", s3_endpoint_url=moto_server.endpoint)
    )
    with pytest.raises(AccessDeniedError) as caught:
        await source.list_versions()

    message = str(caught.value)
    assert "check credentials" in message and "s3://models/repo" in message
    expected_code = "SignatureDoesNotMatch" if wrong == "secret" else "InvalidAccessKeyId"
    assert expected_code in message
    text = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
    logged = [r.getMessage() + str(r.exc_text) + str(r.args) for r in caplog.records]
    assert caplog.records  # the capture is live, so an empty result below means something
    assert canary not in text
    assert not [line for line in logged if canary in line]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_storage_down_during_fetch_retries_then_gives_up(
    moto_server: MotoS3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    moto_server.client.put_object(Bucket="models", Key="repo/1/model.onnx", Body=add_constant(1))
    s = settings(tmp_path, "s3://models/repo", s3_endpoint_url=moto_server.endpoint)
    source = open_source(s)
    version = (await source.list_versions())[1]
    moto_server.stop()

    started = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(UnavailableError, match="s3://models"):
        await source.fetch(version)
    elapsed = time.monotonic() - started

    retries = [r for r in caplog.records if r.name == RETRY_LOGGER]
    assert 2 <= len(retries) <= 40  # backed off, bounded
    assert elapsed < s.retry_deadline + 5  # gave up at the deadline, plus one attempt
    assert _files_under(s.model_dir) == []  # no partial files, no temp folder


async def test_closed_port_is_unavailable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    s = settings(tmp_path, "s3://models/repo", s3_endpoint_url=endpoint, retry_deadline=0.5)
    with caplog.at_level(logging.WARNING), pytest.raises(UnavailableError, match="unreachable"):
        await open_source(s).list_versions()
    assert [r for r in caplog.records if r.name == RETRY_LOGGER]
