"""S10, S11 and S12 through the real server: S3 keys that escape the model folder, ONNX
external data that points outside it (relative, absolute, ``sub/../..``, a symlink), and model
URIs or endpoints outside the allow-list. Each is a load failure or a refusal; a sentinel file
outside stays untouched, no data from outside is ever served, and no connection is made."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.helpers import onnx_models
from tests.helpers.runtime import serve_process, wait_until

from .faultproxy import FaultProxy, fault_proxy
from .storage import BUCKET, ROW, Moto, files_under, s3_args, status

SECRET = np.array([1111.0, 2222.0, 3333.0, 4444.0], dtype=np.float32)


def external_model(location: str) -> bytes:
    """``output0 = input0 + w``, with ``w`` (4 floats) stored as external data at
    ``location``, built by hand with ``data_location=EXTERNAL`` (no checker: it would look)."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["input0", "w"], ["output0"])],
        "external",
        [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    blob: bytes = model.SerializeToString()
    return blob


def plant_secrets(root: Path) -> list[Path]:
    """The secret weights wherever an escaping path could land, so an escape would load."""
    paths = [root / "secret.bin", root / "model-cache" / "secret.bin"]
    paths += [root / "model-cache" / "m" / "secret.bin", Path(f"/tmp/mf-secret-{os.getpid()}")]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SECRET.tobytes())
    return paths


def versions_index(url: str) -> dict[str, dict[str, str]]:
    index = httpx.post(f"{url}/v2/repository/index", timeout=5).json()
    return {entry["version"]: entry for entry in index}


def test_escaping_s3_keys_fail_the_load_and_write_nothing_outside(
    moto: Moto, tmp_path: Path
) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.write_bytes(b"untouched")
    before = sentinel.stat().st_mtime_ns
    moto.client.put_object(Bucket=BUCKET, Key="m/1/model.onnx", Body=onnx_models.add_constant(1))
    for key in ("m/1/../../../sentinel", "m/1//abs/sentinel", "m/../sentinel"):
        moto.client.put_object(Bucket=BUCKET, Key=key, Body=b"evil")
    args = [*s3_args(moto.endpoint), "--poll-interval", "0.5"]
    with serve_process(tmp_path, *args, wait_ready=False) as served:
        wait_until(lambda: "UnsafePath" in served.output(), 20, "the refusal logged")
        answer = httpx.post(f"{served.url}/v2/models/m/infer", json={"inputs": [ROW]})
        assert answer.status_code == 503 and "UnsafePath" in answer.json()["error"]
        assert status(served.url, "/v2/health/ready") == 503
        assert status(served.url, "/v2/health/live") == 200
    assert sentinel.read_bytes() == b"untouched" and sentinel.stat().st_mtime_ns == before
    outside = [p for p in files_under(tmp_path) if not p.startswith("model-cache/")]
    assert sorted(outside) == ["sentinel", "serve-" + served.url.rsplit(":", 1)[1] + ".log"]
    assert files_under(tmp_path / "model-cache") == []


ESCAPES = {1: "../secret.bin", 2: "../../secret.bin", 3: "sub/../../secret.bin"}


def test_external_data_outside_the_model_folder_never_loads(moto: Moto, tmp_path: Path) -> None:
    secrets = plant_secrets(tmp_path)
    escapes = ESCAPES | {4: str(secrets[0]), 5: str(secrets[3])}
    for version, location in escapes.items():
        key = f"m/{version}/model.onnx"
        moto.client.put_object(Bucket=BUCKET, Key=key, Body=external_model(location))
    good = external_model("weights.bin")
    moto.client.put_object(Bucket=BUCKET, Key="m/6/model.onnx", Body=good)
    moto.client.put_object(Bucket=BUCKET, Key="m/6/weights.bin", Body=np.ones(4, "f4").tobytes())
    args = [*s3_args(moto.endpoint), "--version-policy", "all"]
    try:
        with serve_process(tmp_path, *args) as served:
            url = served.url
            wait_until(lambda: len(versions_index(url)) == 6, 20, "every version attempted")
            index = versions_index(url)
            assert index["6"]["state"] == "READY"
            for version in escapes:
                entry = index[str(version)]
                assert entry["state"] == "UNAVAILABLE", entry
                assert entry["reason"] == "ModelLoadFailed", entry
                assert "External data path validation failed" in entry["message"], entry
                answer = httpx.post(
                    f"{url}/v2/models/m/versions/{version}/infer", json={"inputs": [ROW]}
                )
                assert answer.status_code == 503, answer.text
            served_answer = httpx.post(f"{url}/v2/models/m/infer", json={"inputs": [ROW]})
            assert served_answer.json()["outputs"][0]["data"] == [2, 3, 4, 5]
    finally:
        secrets[3].unlink()
    assert "2222" not in served.output()


def test_external_data_symlink_out_of_a_local_repository(tmp_path: Path) -> None:
    secret = plant_secrets(tmp_path)[0]
    repo = tmp_path / "pvc" / "m"
    (repo / "1").mkdir(parents=True)
    (repo / "1" / "model.onnx").write_bytes(external_model("weights.bin"))
    (repo / "1" / "weights.bin").symlink_to(secret)
    args = ["--model-uri", str(repo), "--poll-interval", "0.5"]
    with serve_process(tmp_path, *args, wait_ready=False) as served:
        wait_until(lambda: "UnsafePath" in served.output(), 20, "the refusal logged")
        answer = httpx.post(f"{served.url}/v2/models/m/infer", json={"inputs": [ROW]})
        assert answer.status_code == 503 and "UnsafePath" in answer.json()["error"]
    assert secret.read_bytes() == SECRET.tobytes()


# --- S12: allow-list ------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[FaultProxy]:
    """A loopback listener that records every connection (and resets it)."""
    with fault_proxy(upstream_port=1) as proxy:
        proxy.set_mode("reset")
        yield proxy


def run_serve(tmp: Path, listener: FaultProxy, *args: str) -> subprocess.CompletedProcess[str]:
    """``modelfleet serve`` that must refuse at start-up; every proxy variable points at the
    listener, so a request to any host (169.254.169.254 included) would be recorded."""
    env = {**os.environ, "MODELFLEET_MODEL_DIR": str(tmp / "cache")}
    env |= dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"), listener.endpoint)
    env |= {k.lower(): listener.endpoint for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    command = [sys.executable, "-m", "modelfleet_runtime.cli", "serve", "--port", "0", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        ["--model-uri", "http://169.254.169.254/latest/meta-data/iam/model.onnx"],
        ["--model-uri", "https://169.254.169.254/model.onnx", "--allowed-hosts", '["a.b"]'],
        ["--model-uri", "s3://models/m", "--s3-endpoint-url", "LISTENER",
         "--allowed-hosts", '["s3.example.com"]'],
        ["--model-uri", "s3://models/m", "--allowed-schemes", '["gs"]'],
        ["--model-uri", "file:///etc/model.onnx", "--allowed-schemes", '["s3"]'],
    ],
)  # fmt: skip
def test_uri_outside_the_allow_list_is_refused_with_no_connection(
    tmp_path: Path, listener: FaultProxy, args: list[str]
) -> None:
    args = [listener.endpoint if a == "LISTENER" else a for a in args]
    result = run_serve(tmp_path, listener, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("modelfleet serve: NotAllowed: "), result.stderr[-2000:]
    assert "allowed" in result.stderr.removeprefix("modelfleet serve: NotAllowed: ")
    assert listener.count("connect") == 0


def test_allowed_endpoint_is_contacted(tmp_path: Path, listener: FaultProxy) -> None:
    """The positive control: the same listener does record the server when it is allowed."""
    host = listener.endpoint.removeprefix("http://")
    args = [*s3_args(listener.endpoint, deadline=1.0), "--allowed-hosts", f'["{host}"]']
    with serve_process(tmp_path, *args, wait_ready=False):
        wait_until(lambda: listener.count("connect") >= 1, 20, "a connection to the endpoint")
