"""``modelfleet serve`` against a real S3 server (SeaweedFS): the model is fetched, served,
a version uploaded later is swapped in without a restart, and a pushed model's start phases
are exported."""

from __future__ import annotations

import io
import tarfile
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from modelfleet_runtime.catalog.push import LocalModel, push
from modelfleet_runtime.startup import PHASES
from tests.helpers import onnx_models
from tests.helpers.aws import s3_client
from tests.helpers.runtime import serve_process, wait_until

from .helpers import external_data_model, settings

BODY = {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}


def serve_args(seaweed: str, uri: str) -> list[str]:
    """``modelfleet serve`` options for ``uri`` on the test's SeaweedFS, polling fast."""
    return [
        "--model-uri", uri, "--s3-endpoint-url", seaweed, "--s3-addressing-style", "path",
        "--s3-region", "us-east-1", "--poll-interval", "0.3",
    ]  # fmt: skip


def first_answer_is_one(url: str) -> None:
    first = httpx.post(url, json=BODY).json()
    assert (first["model_version"], first["outputs"][0]["data"]) == ("1", [1.0] * 4)


def test_serves_from_s3_and_picks_up_a_new_version(seaweed: str, tmp_path: Path) -> None:
    client = s3_client(seaweed)
    bucket = f"serve-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="adder/1/model.onnx", Body=onnx_models.add_constant(1))
    with serve_process(tmp_path, *serve_args(seaweed, f"s3://{bucket}/adder")) as served:
        url = f"{served.url}/v2/models/adder/infer"
        first_answer_is_one(url)
        client.put_object(Bucket=bucket, Key="adder/2/model.onnx", Body=onnx_models.add_constant(2))
        wait_until(lambda: httpx.post(url, json=BODY).json()["model_version"] == "2", 20, "v2")
        assert httpx.post(url, json=BODY).json()["outputs"][0]["data"] == [2.0] * 4
        assert httpx.get(f"{served.url}/v2/models/adder").json()["versions"] == ["2"]


def archive_of(model: bytes, folder: str = "adder") -> bytes:
    """A .tar.gz as `tar czf adder.tar.gz adder/` makes it, the model under its own name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{folder}/{folder}.onnx")
        info.size = len(model)
        tar.addfile(info, io.BytesIO(model))
    return buffer.getvalue()


def test_serves_an_archive_from_s3_and_swaps_when_it_is_replaced(
    seaweed: str, tmp_path: Path
) -> None:
    client = s3_client(seaweed)
    bucket = f"archive-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(
        Bucket=bucket, Key="adder.tar.gz", Body=archive_of(onnx_models.add_constant(1))
    )
    with serve_process(tmp_path, *serve_args(seaweed, f"s3://{bucket}/adder.tar.gz")) as served:
        url = f"{served.url}/v2/models/adder/infer"
        first_answer_is_one(url)
        client.put_object(
            Bucket=bucket, Key="adder.tar.gz", Body=archive_of(onnx_models.add_constant(2))
        )
        wait_until(
            lambda: httpx.post(url, json=BODY).json()["outputs"][0]["data"] == [2.0] * 4,
            20,
            "the replaced archive served",
        )
    # Each served version is a promoted folder of model.onnx alone: no archive, no staging.
    folders = [p for p in (tmp_path / "model-cache").glob("*/*") if p.is_dir()]
    assert folders, list((tmp_path / "model-cache").rglob("*"))
    for folder in folders:
        assert not folder.name.startswith(".tmp-"), folder
        assert sorted(p.name for p in folder.iterdir()) == ["model.onnx"], folder


def test_a_pushed_model_in_ranged_parts_serves_and_reports_its_start(
    seaweed: str, tmp_path: Path
) -> None:
    """The whole cold path of ``modelfleet serve``: the download starts while the server
    imports (prefetch.py), the manifest is checked on digests taken during the download, and
    /metrics says how long each phase took."""
    bucket = f"phases-{uuid.uuid4().hex[:8]}"
    s3_client(seaweed).create_bucket(Bucket=bucket)
    external_data_model(tmp_path / "local", floats=400_000)  # 1.6 MB of weights: two parts
    uri = f"s3://{bucket}/ext"
    pushing = settings(tmp_path, uri, s3_endpoint_url=seaweed)
    push(LocalModel.open(tmp_path / "local" / "model.onnx", pushing), uri, pushing)
    args = [*serve_args(seaweed, uri), "--download-part-size", str(1024 * 1024)]
    with serve_process(tmp_path, *args) as served:
        metrics = httpx.get(f"{served.url}/metrics").text
    phases = {
        sample.labels["phase"]: sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "modelfleet_model_start_phase_seconds"
        for sample in family.samples
        if sample.labels["version"] == "1"
    }
    assert sorted(phases) == sorted(PHASES)
    assert phases["download"] > 0 and phases["load"] > 0
