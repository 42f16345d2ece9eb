"""Digests computed while the parts download (storage/digests.py), against moto's S3 server:
the manifest and ``--sha256`` checks get the digest of every file without a second pass over
it, and a version with one corrupt part is still refused, with nothing promoted."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from modelfleet_runtime.catalog.push import LocalModel, push
from modelfleet_runtime.startup import StartPhases
from modelfleet_runtime.storage import IntegrityError, manifest, open_source

from .conftest import MotoS3
from .helpers import external_data_model, settings

MiB = 1024 * 1024
SMALL_PARTS = {"download_part_size": MiB, "download_concurrency": 4}


def _ranged(tmp: Path, uri: str, endpoint: str, **overrides: Any) -> Any:
    return open_source(settings(tmp, uri, s3_endpoint_url=endpoint, **SMALL_PARTS, **overrides))


@pytest.fixture
def hashed_again(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files that are read and hashed (for real) after they were written: the push's
    own files included, so tests look at the model folder's alone."""
    calls: list[Path] = []
    original = manifest.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return original(path)

    monkeypatch.setattr(manifest, "sha256_file", counting)
    return calls


def _pushed(moto: MotoS3, tmp: Path) -> Path:
    """A model with 3 MiB of external data pushed (with its manifest) to s3://models/ext."""
    external_data_model(tmp / "local", floats=786_432 + 1000)  # parts of 1 MiB, a short tail
    pushing = settings(tmp, "s3://models/ext", s3_endpoint_url=moto.endpoint)
    push(LocalModel.open(tmp / "local" / "model.onnx", pushing), "s3://models/ext", pushing)
    return tmp / "local"


async def test_a_pushed_version_is_verified_without_a_second_pass(
    moto_server: MotoS3, tmp_path: Path, hashed_again: list[Path]
) -> None:
    local = _pushed(moto_server, tmp_path)
    source = _ranged(tmp_path, "s3://models/ext", moto_server.endpoint)
    phases = StartPhases()

    path = await source.fetch((await source.list_versions())[1], phases)

    assert (path.parent / "weights.bin").read_bytes() == (local / "weights.bin").read_bytes()
    # every file's digest came from its download
    assert [p for p in hashed_again if p.is_relative_to(tmp_path / "models")] == []
    assert phases.seconds["download"] > 0


async def test_a_corrupt_part_is_refused_and_nothing_is_promoted(
    moto_server: MotoS3, tmp_path: Path
) -> None:
    _pushed(moto_server, tmp_path)
    key = "ext/1/weights.bin"
    body = bytearray(moto_server.client.get_object(Bucket="models", Key=key)["Body"].read())
    body[2 * MiB + 17] ^= 0xFF  # one byte of the third part, same size
    moto_server.client.put_object(Bucket="models", Key=key, Body=bytes(body))
    source = _ranged(tmp_path, "s3://models/ext", moto_server.endpoint)

    with pytest.raises(IntegrityError, match="weights.bin.*sha256"):
        await source.fetch((await source.list_versions())[1])

    folder = tmp_path / "models" / "ext"
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == []
    assert [p.name for p in folder.glob(".tmp-*")] == []


async def test_sha256_setting_is_checked_on_the_downloaded_digest(
    moto_server: MotoS3, tmp_path: Path, hashed_again: list[Path]
) -> None:
    # The fetch checks bytes only (ONNX Runtime never sees them here): any 3 MiB + 4 bytes,
    # four ranged parts, the last one short.
    big = bytes(range(256)) * (3 * MiB // 256) + b"tail"
    moto_server.client.put_object(Bucket="models", Key="raw/1/model.onnx", Body=big)
    good = hashlib.sha256(big).hexdigest()
    source = _ranged(tmp_path, "s3://models/raw", moto_server.endpoint, sha256={1: good})
    path = await source.fetch((await source.list_versions())[1])
    assert path.read_bytes() == big
    assert hashed_again == []

    corrupt = big[: 2 * MiB] + b"\x01" + big[2 * MiB + 1 :]
    moto_server.client.put_object(Bucket="models", Key="raw/2/model.onnx", Body=corrupt)
    source = _ranged(tmp_path, "s3://models/raw", moto_server.endpoint, sha256={2: good})
    with pytest.raises(IntegrityError, match=f"expected {good}"):
        await source.fetch((await source.list_versions())[2])
