"""``modelfleet serve`` against a real S3 server (SeaweedFS): the model is fetched, served,
and a version uploaded later is swapped in without a restart."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.helpers import onnx_models
from tests.helpers.aws import s3_client
from tests.helpers.runtime import serve_process, wait_until

BODY = {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}


def test_serves_from_s3_and_picks_up_a_new_version(seaweed: str, tmp_path: Path) -> None:
    client = s3_client(seaweed)
    bucket = f"serve-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="adder/1/model.onnx", Body=onnx_models.add_constant(1))
    args = [
        "--model-uri", f"s3://{bucket}/adder", "--s3-endpoint-url", seaweed,
        "--s3-addressing-style", "path", "--s3-region", "us-east-1", "--poll-interval", "0.3",
    ]  # fmt: skip
    with serve_process(tmp_path, *args) as served:
        url = f"{served.url}/v2/models/adder/infer"
        first = httpx.post(url, json=BODY).json()
        assert (first["model_version"], first["outputs"][0]["data"]) == ("1", [1.0] * 4)
        client.put_object(Bucket=bucket, Key="adder/2/model.onnx", Body=onnx_models.add_constant(2))
        wait_until(lambda: httpx.post(url, json=BODY).json()["model_version"] == "2", 20, "v2")
        assert httpx.post(url, json=BODY).json()["outputs"][0]["data"] == [2.0] * 4
        assert httpx.get(f"{served.url}/v2/models/adder").json()["versions"] == ["2"]
