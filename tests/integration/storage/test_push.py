"""``modelfleet models push|list|show`` on real storage (SeaweedFS for S3, local folders, the
GCS emulator) and the runtime's manifest checks: concurrent pushes end as whole versions, a
half-uploaded version is never served, and a version whose bytes differ from its manifest is
refused with the reason in ``version_status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet_runtime.catalog.push import LocalModel, PushError, push
from modelfleet_runtime.config import Settings
from modelfleet_runtime.storage import NotFoundError, open_writable
from modelfleet_runtime.storage.manifest import CLAIM_FILE, MANIFEST_FILE, FileDigest, Manifest
from modelfleet_runtime.storage.manifest import sha256_file as sha256_of
from modelfleet_runtime.storage.oci import push as oci_push
from tests.helpers import onnx_models
from tests.helpers.aws import s3_client
from tests.helpers.registry import Registry
from tests.helpers.runtime import serve_process, wait_until
from tests.integration.storage.conftest import MotoS3
from tests.integration.storage.helpers import external_data_model

BODY = {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}
S3_ENV = {
    "MODELFLEET_S3_ADDRESSING_STYLE": "path",
    "MODELFLEET_S3_REGION": "us-east-1",
}


@pytest.fixture
def bucket(seaweed: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on SeaweedFS; the environment points the runtime's S3 settings at it."""
    name = f"push-{uuid.uuid4().hex[:8]}"
    s3_client(seaweed).create_bucket(Bucket=name)
    monkeypatch.setenv("MODELFLEET_S3_ENDPOINT_URL", seaweed)
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    return name


def adder(tmp: Path, value: float) -> Path:
    """A model file adding ``value`` to its FP32[?,4] input."""
    path = tmp / f"add-{value:g}.onnx"
    path.write_bytes(onnx_models.add_constant(value))
    return path


def models(*args: str) -> subprocess.CompletedProcess[str]:
    """``modelfleet models ARGS`` as a user runs it."""
    command = [sys.executable, "-m", "modelfleet_runtime.cli", "models", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def serve_args(uri: str, *extra: str) -> list[str]:
    return ["--model-uri", uri, "--name", "adder", "--poll-interval", "0.3", *extra]


def answer(url: str, version: str | None = None) -> Any:
    path = f"/versions/{version}" if version else ""
    return httpx.post(f"{url}/v2/models/adder{path}/infer", json=BODY).json()


def status_of(url: str, version: int) -> dict[str, str]:
    """The version's state, reason and message: from the model's ``version_status`` while a
    version serves, else from the repository index (the metadata is a 503 then)."""
    metadata = httpx.get(f"{url}/v2/models/adder")
    if metadata.status_code == 200:
        statuses = metadata.json()["version_status"]
    else:
        statuses = httpx.post(f"{url}/v2/repository/index").json()
    found = [s for s in statuses if s["version"] == str(version)]
    return found[0] if found else {}


# --- push, list, show ------------------------------------------------------------------------


def test_push_list_show_then_serve_every_version(bucket: str, tmp_path: Path) -> None:
    repo = f"s3://{bucket}/adder"
    one, two = adder(tmp_path, 1), adder(tmp_path, 2)

    pushed = models("push", str(one), repo)
    assert pushed.returncode == 0, pushed.stderr
    assert "input0 FP32[?,4] -> output0 FP32[?,4]" in pushed.stdout  # the signature, first
    assert f"pushed {repo}/1" in pushed.stdout
    assert models("push", str(two), repo).returncode == 0

    listed = models("list", repo, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["version"], r["state"]) for r in rows] == [(1, "pushed"), (2, "pushed")]
    for row, local in zip(rows, (one, two), strict=True):
        assert row["manifest"]["files"]["model.onnx"] == {
            "size": local.stat().st_size,
            "sha256": sha256_of(local),
        }
        assert row["manifest"]["signature"]["inputs"] == [
            {"name": "input0", "datatype": "FP32", "shape": [-1, 4]}
        ]
    table = models("list", repo).stdout.splitlines()
    assert table[0].split()[:6] == ["VERSION", "STATE", "SIZE", "SHA256", "PUSHED", "AT"]
    assert table[2].split()[:2] == ["2", "pushed"] and sha256_of(two)[:12] in table[2]

    shown = models("show", repo, "--version", "1")
    assert shown.returncode == 0 and f"sha256:{sha256_of(one)}" in shown.stdout
    assert models("show", repo).stdout.startswith(f"{repo}/2\n")  # the newest by default
    shown_file = models("show", str(one))
    assert "input0 FP32[?,4]" in shown_file.stdout and sha256_of(one) in shown_file.stdout

    with serve_process(tmp_path, *serve_args(repo, "--version-policy", "all")) as served:
        wait_until(lambda: answer(served.url, "2").get("model_version") == "2", 30, "v2")
        assert answer(served.url, "1")["outputs"][0]["data"] == [1.0] * 4
        assert answer(served.url, "2")["outputs"][0]["data"] == [2.0] * 4


def test_a_file_that_does_not_load_is_refused_before_anything_is_written(
    bucket: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    result = models("push", str(broken), f"s3://{bucket}/broken")
    assert result.returncode == 1
    assert "not pushed: ONNX Runtime cannot load" in result.stderr
    assert "Traceback" not in result.stderr
    assert (
        s3_client(os.environ["MODELFLEET_S3_ENDPOINT_URL"])
        .list_objects_v2(Bucket=bucket)
        .get("KeyCount", 0)
        == 0
    )


def test_an_upload_s3_refuses_is_a_storage_error_without_botocore_text(
    moto_server: MotoS3, tmp_path: Path
) -> None:
    """boto3's managed upload wraps S3's error in its own (with botocore's text); the store
    reports it like every other S3 error: the code and where, nothing else."""
    settings = Settings(s3_endpoint_url=moto_server.endpoint, s3_addressing_style="path")
    store = open_writable("s3://no-such-bucket/adder", settings)
    with pytest.raises(NotFoundError) as refused:
        store.upload("1/model.onnx", adder(tmp_path, 1.0))
    assert str(refused.value) == (
        "s3://no-such-bucket/adder/1/model.onnx: not found (NoSuchBucket)"
    )


def test_an_explicit_version_is_never_overwritten(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert models("push", str(adder(tmp_path, 1)), str(repo), "--version", "7").returncode == 0
    again = models("push", str(adder(tmp_path, 2)), str(repo), "--version", "7")
    assert again.returncode == 1 and "7 exists; versions are never overwritten" in again.stderr
    assert sha256_of(repo / "7" / "model.onnx") == sha256_of(tmp_path / "add-1.onnx")
    assert f"pushed file://{repo}/8 (" in models("push", str(adder(tmp_path, 2)), str(repo)).stdout


def test_external_data_files_travel_with_the_model(tmp_path: Path) -> None:
    weights = external_data_model(tmp_path / "src", floats=1024)
    repo = tmp_path / "repo"
    result = models("push", str(tmp_path / "src" / "model.onnx"), f"file://{repo}")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((repo / "1" / MANIFEST_FILE).read_text())
    assert sorted(manifest["files"]) == ["model.onnx", "weights.bin"]
    assert manifest["files"]["weights.bin"]["size"] == weights.nbytes
    body = {"inputs": [{"name": "input0", "shape": [1, 1024], "datatype": "FP32",
                        "data": [0.0] * 1024}]}  # fmt: skip
    with serve_process(tmp_path, "--model-uri", str(repo), "--name", "ext") as served:
        out = httpx.post(f"{served.url}/v2/models/ext/infer", json=body).json()
        assert out["outputs"][0]["data"][:3] == pytest.approx(weights[:3].tolist())


def test_push_and_list_on_gcs(gcs_emulator: str, tmp_path: Path) -> None:
    httpx.post(f"{gcs_emulator}/storage/v1/b", json={"name": "models"}).raise_for_status()
    repo, endpoint = "gs://models/adder", ["--gcs-endpoint-url", gcs_emulator]
    for value in (1, 2):
        result = models("push", str(adder(tmp_path, value)), repo, *endpoint)
        assert result.returncode == 0, result.stderr
    rows = json.loads(models("list", repo, "--json", *endpoint).stdout)
    assert [r["version"] for r in rows] == [1, 2]
    assert rows[1]["manifest"]["files"]["model.onnx"]["sha256"] == sha256_of(
        tmp_path / "add-2.onnx"
    )


# --- the race ----------------------------------------------------------------------------


def s3_settings(seaweed: str, tmp: Path) -> Settings:
    return Settings(
        model_dir=tmp / "models",
        s3_endpoint_url=seaweed,
        s3_addressing_style="path",
        s3_region="us-east-1",
    )


def test_concurrent_pushes_end_as_whole_versions(bucket: str, seaweed: str, tmp_path: Path) -> None:
    """Six pushes started together all list the same empty repository and want version 1;
    each must end as a version of its own holding exactly its own model."""
    settings = s3_settings(seaweed, tmp_path)
    local = [LocalModel.open(adder(tmp_path, value), settings) for value in range(6)]
    start = threading.Barrier(len(local))
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=30)
            results[index] = push(local[index], f"s3://{bucket}/race", settings).reference
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(local))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    numbers = sorted(int(ref.rsplit("/", 1)[1]) for ref in results.values())
    assert numbers == [1, 2, 3, 4, 5, 6]

    client = s3_client(seaweed)
    for index, reference in results.items():
        number = reference.rsplit("/", 1)[1]
        body = client.get_object(Bucket=bucket, Key=f"race/{number}/model.onnx")["Body"].read()
        assert body == local[index].path.read_bytes(), f"version {number} is not push {index}'s"
        raw = client.get_object(Bucket=bucket, Key=f"race/{number}/{MANIFEST_FILE}")["Body"]
        manifest = Manifest.parse(raw.read(), where=reference)
        assert manifest.version == int(number)
        assert manifest.files["model.onnx"].sha256 == sha256_of(local[index].path)


def test_a_claimed_number_is_skipped(tmp_path: Path) -> None:
    """A push in progress elsewhere holds version 1 (its claim, no manifest yet)."""
    repo = tmp_path / "repo"
    (repo / "1").mkdir(parents=True)
    (repo / "1" / CLAIM_FILE).write_text("{}")
    settings = Settings(model_dir=tmp_path / "models")
    pushed = push(LocalModel.open(adder(tmp_path, 3), settings), str(repo), settings)
    assert pushed.reference.endswith("/2") and not (repo / "1" / "model.onnx").exists()
    with pytest.raises(PushError, match="1 exists"):
        push(LocalModel.open(adder(tmp_path, 3), settings), str(repo), settings, version=1)


# --- what the runtime serves -----------------------------------------------------------------


def half_push(client: Any, bucket: str, prefix: str, number: int, model: bytes) -> None:
    """What storage holds while a push is uploading: the claim and files, no manifest."""
    client.put_object(Bucket=bucket, Key=f"{prefix}/{number}/{CLAIM_FILE}", Body=b"{}")
    client.put_object(Bucket=bucket, Key=f"{prefix}/{number}/model.onnx", Body=model)


def finish_push(client: Any, bucket: str, prefix: str, number: int, model: bytes) -> None:
    """The push's last step: its manifest."""
    path = Path(os.environ["TMPDIR"] if "TMPDIR" in os.environ else "/tmp") / uuid.uuid4().hex
    path.write_bytes(model)
    try:
        signature = LocalModel.open(path, Settings()).signature
        digest = FileDigest(size=len(model), sha256=sha256_of(path))
    finally:
        path.unlink()
    manifest = Manifest(
        version=number, pushed_at=datetime.now(UTC), files={"model.onnx": digest},
        signature=signature,
    )  # fmt: skip
    key = f"{prefix}/{number}/{MANIFEST_FILE}"
    client.put_object(Bucket=bucket, Key=key, Body=manifest.to_json())


def test_a_half_uploaded_version_is_never_served(bucket: str, seaweed: str, tmp_path: Path) -> None:
    client = s3_client(seaweed)
    one, two = onnx_models.add_constant(1), onnx_models.add_constant(2)
    half_push(client, bucket, "adder", 1, one)
    with serve_process(tmp_path, *serve_args(f"s3://{bucket}/adder"), wait_ready=False) as served:
        wait_until(lambda: status_of(served.url, 1).get("reason") == "ManifestMissing", 30, "v1")
        assert httpx.get(f"{served.url}/v2/health/ready").status_code == 503
        assert "no modelfleet.json" in status_of(served.url, 1)["message"]

        finish_push(client, bucket, "adder", 1, one)
        wait_until(lambda: answer(served.url).get("model_version") == "1", 30, "v1 served")

        half_push(client, bucket, "adder", 2, two)
        wait_until(lambda: status_of(served.url, 2).get("reason") == "ManifestMissing", 30, "v2")
        assert answer(served.url)["outputs"][0]["data"] == [1.0] * 4  # still version 1

        finish_push(client, bucket, "adder", 2, two)
        wait_until(lambda: answer(served.url).get("model_version") == "2", 30, "v2 served")
        assert answer(served.url)["outputs"][0]["data"] == [2.0] * 4


def test_a_version_that_differs_from_its_manifest_is_refused(
    bucket: str, seaweed: str, tmp_path: Path
) -> None:
    settings = s3_settings(seaweed, tmp_path)
    client = s3_client(seaweed)
    for value in (1, 2, 3):
        push(LocalModel.open(adder(tmp_path, value), settings), f"s3://{bucket}/adder", settings)
    # Version 2's bytes replaced after its push; version 3 gains a file it was not pushed with.
    client.put_object(Bucket=bucket, Key="adder/2/model.onnx", Body=onnx_models.add_constant(9))
    client.put_object(Bucket=bucket, Key="adder/3/extra.bin", Body=b"planted")
    args = serve_args(f"s3://{bucket}/adder", "--version-policy", "all")
    with serve_process(tmp_path, *args) as served:
        wait_until(lambda: status_of(served.url, 3).get("reason") == "IntegrityError", 30, "v3")
        two, three = status_of(served.url, 2), status_of(served.url, 3)
        assert two["state"] == "UNAVAILABLE" and two["reason"] == "IntegrityError"
        assert "'model.onnx' differs from its manifest (sha256" in two["message"]
        assert "'extra.bin', which its modelfleet.json does not list" in three["message"]
        assert answer(served.url, "1")["outputs"][0]["data"] == [1.0] * 4
        assert (
            httpx.post(f"{served.url}/v2/models/adder/versions/2/infer", json=BODY).status_code
            == 503
        )


# --- oci:// ----------------------------------------------------------------------------------


def test_push_to_an_oci_registry_then_serve_it(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in registry.env().items():
        monkeypatch.setenv(name, value)
    pushed = models("push", str(adder(tmp_path, 4)), registry.uri("models/adder", "v1"))
    assert pushed.returncode == 0, pushed.stderr
    reference = pushed.stdout.splitlines()[-1].split()[1]
    assert reference.startswith(f"oci://{registry.host}/models/adder@sha256:")
    assert registry.password not in pushed.stdout + pushed.stderr

    with serve_process(tmp_path, *serve_args(reference), env=registry.env()) as served:
        assert answer(served.url)["outputs"][0]["data"] == [4.0] * 4


def test_an_image_whose_manifest_lies_is_refused(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image's own modelfleet.json (inside the layer) is checked after unpacking: an image
    built with another model's manifest is refused, even though every blob digest is right."""
    for name, value in registry.env().items():
        monkeypatch.setenv(name, value)
    settings = Settings(model_dir=tmp_path / "models")
    model = LocalModel.open(adder(tmp_path, 1), settings)
    other = LocalModel.open(adder(tmp_path, 2), settings)
    lying = Manifest(
        version=1, pushed_at=datetime.now(UTC), files=other.digests(), signature=other.signature
    )
    (tmp_path / MANIFEST_FILE).write_bytes(lying.to_json())
    reference = oci_push(
        registry.uri("models/liar"), model.files | {MANIFEST_FILE: tmp_path / MANIFEST_FILE},
        settings,
    )  # fmt: skip
    with serve_process(
        tmp_path, *serve_args(reference), env=registry.env(), wait_ready=False
    ) as served:
        wait_until(lambda: status_of(served.url, 1).get("reason") == "IntegrityError", 30, "v1")
        assert "'model.onnx' differs from its manifest" in status_of(served.url, 1)["message"]
        assert httpx.get(f"{served.url}/v2/health/ready").status_code == 503
