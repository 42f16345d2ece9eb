"""s3:// against a real S3 server (SeaweedFS): both layouts, external data fetched in parallel
byte ranges, and sha256 checks."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from modelfleet_runtime.storage import IntegrityError, open_source
from tests.helpers.aws import s3_client
from tests.helpers.onnx_models import add_constant, write_repository

from .helpers import RecordingProxy, external_data_model, settings, upload_folder


@pytest.fixture
def bucket(seaweed: str) -> tuple[Any, str]:
    """A fresh bucket on the session's SeaweedFS."""
    client = s3_client(seaweed)
    name = f"t-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return client, name


def _leftovers(model_dir: Path) -> list[Path]:
    return [p for p in model_dir.rglob("*") if p.name.startswith(".tmp-")]


async def test_repository_layout(seaweed: str, bucket: tuple[Any, str], tmp_path: Path) -> None:
    client, name = bucket
    repo = write_repository(tmp_path / "repo", {1: add_constant(1.0), 2: add_constant(2.0)})
    (repo / "docs").mkdir()
    (repo / "docs" / "README").write_text("not a version")
    upload_folder(client, name, repo, "iris")
    source = open_source(settings(tmp_path, f"s3://{name}/iris", s3_endpoint_url=seaweed))

    versions = await source.list_versions()
    assert sorted(versions) == [1, 2]
    path = await source.fetch(versions[2])

    assert path.name == "model.onnx"
    assert path.read_bytes() == (repo / "2" / "model.onnx").read_bytes()
    assert path.parent.parent == tmp_path / "models" / "iris"
    assert path.parent.name == f"2-{versions[2].fingerprint}"
    assert _leftovers(tmp_path / "models") == []


async def test_single_file(seaweed: str, bucket: tuple[Any, str], tmp_path: Path) -> None:
    client, name = bucket
    blob = add_constant(5.0)
    client.put_object(Bucket=name, Key="one/iris.onnx", Body=blob)
    source = open_source(settings(tmp_path, f"s3://{name}/one/iris.onnx", s3_endpoint_url=seaweed))

    versions = await source.list_versions()
    assert list(versions) == [1]
    path = await source.fetch(versions[1])
    assert path.read_bytes() == blob


async def test_external_data_in_parallel_ranges(
    seaweed: str, bucket: tuple[Any, str], tmp_path: Path
) -> None:
    client, name = bucket
    weights = external_data_model(tmp_path / "repo" / "1")  # 3 MiB weights.bin
    upload_folder(client, name, tmp_path / "repo", "big")
    port = int(seaweed.rsplit(":", 1)[1])
    proxy = RecordingProxy(("127.0.0.1", port))
    try:
        s = settings(
            tmp_path,
            f"s3://{name}/big",
            s3_endpoint_url=proxy.url,
            download_part_size=1024 * 1024,
            download_concurrency=3,
        )
        source = open_source(s)
        version = (await source.list_versions())[1]
        path = await source.fetch(version)
    finally:
        proxy.close()

    assert (path.parent / "weights.bin").read_bytes() == (
        tmp_path / "repo" / "1" / "weights.bin"
    ).read_bytes()
    assert proxy.count(b"\r\nrange: bytes=") >= 3  # 3 MiB in 1 MiB parts
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.ones((1, weights.size), dtype=np.float32)
    np.testing.assert_array_equal(session.run(None, {"input0": x})[0], x + weights)


async def test_sha256_match_and_mismatch(
    seaweed: str, bucket: tuple[Any, str], tmp_path: Path
) -> None:
    client, name = bucket
    blob = add_constant(3.0)
    client.put_object(Bucket=name, Key="digest/1/model.onnx", Body=blob)
    uri = f"s3://{name}/digest"
    good = hashlib.sha256(blob).hexdigest()
    source = open_source(settings(tmp_path, uri, s3_endpoint_url=seaweed, sha256={1: good}))
    path = await source.fetch((await source.list_versions())[1])
    assert path.read_bytes() == blob

    wrong = "0" * 64
    other = tmp_path / "other"
    source = open_source(settings(other, uri, s3_endpoint_url=seaweed, sha256={1: wrong}))
    with pytest.raises(IntegrityError) as caught:
        await source.fetch((await source.list_versions())[1])
    assert wrong in str(caught.value) and good in str(caught.value)
    assert [p for p in (other / "models").rglob("*") if p.is_file()] == []
    assert _leftovers(other / "models") == []
