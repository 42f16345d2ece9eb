"""The client speaks the protocol, not our server: KServe 0.21's ModelServer and MLServer
1.7.1, installed from PyPI into their own venvs (``scripts/peers``) and started here on free
127.0.0.1 ports, serving the same every-datatype model through ONNX Runtime, called over
HTTP and gRPC. A missing venv fails these tests (with the command that makes it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet_client import Client, InferenceServerError
from tests.client.conftest import Server, assert_echoed, every_inputs
from tests.helpers import onnx_models, peers
from tests.helpers.runtime import free_port
from tests.helpers.waiting import http_status, wait_until

HERE = Path(__file__).parent / "peers"


def _start(
    command: list[str], log: Path, cwd: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(  # its own process group, so that teardown ends its children
            command, stdout=sink, stderr=subprocess.STDOUT, cwd=cwd,
            env={**os.environ, **env}, start_new_session=True,
        )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _served(process: subprocess.Popen[bytes], http: str, log: Path) -> None:
    ready = f"{http}/v2/models/every/ready"
    wait_until(lambda: process.poll() is not None or http_status(ready) == 200, 120, "the peer")
    assert process.poll() is None, log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("peer-model") / "every.onnx"
    path.write_bytes(onnx_models.echo_every_type())
    return path


@pytest.fixture(scope="module")
def kserve(model: Path) -> Iterator[Server]:
    python = peers.python("kserve")
    http, grpc = free_port(), free_port()
    log = model.parent / "kserve.log"
    command = [str(python), str(HERE / "kserve_onnx.py"), "--http_port", str(http),
               "--grpc_port", str(grpc), "--configure_logging", "false"]  # fmt: skip
    env = {"PEER_MODEL_NAME": "every", "PEER_MODEL_PATH": str(model)}
    process = _start(command, log, model.parent, env)
    try:
        _served(process, f"http://127.0.0.1:{http}", log)
        yield Server("every", f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}")
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def mlserver(model: Path) -> Iterator[Server]:
    python = peers.python("mlserver")
    folder = model.parent / "mlserver"
    folder.mkdir()
    shutil.copy(HERE / "mlserver_onnx.py", folder)
    shutil.copy(HERE / "onnx_signature.py", folder)
    http, grpc, metrics = free_port(), free_port(), free_port()
    settings = {"http_port": http, "grpc_port": grpc, "metrics_port": metrics,
                "metrics_endpoint": None, "parallel_workers": 0, "host": "127.0.0.1"}  # fmt: skip
    (folder / "settings.json").write_text(json.dumps(settings))
    model_settings = {"name": "every", "implementation": "mlserver_onnx.OnnxRuntime",
                      "parameters": {"uri": str(model)}}  # fmt: skip
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    log = model.parent / "mlserver.log"
    process = _start([str(python.parent / "mlserver"), "start", str(folder)], log, folder, {})
    try:
        _served(process, f"http://127.0.0.1:{http}", log)
        yield Server("every", f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}")
    finally:
        _stop(process)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_kserve_every_datatype(kserve: Server, transport: str) -> None:
    inputs = every_inputs(rows=2)
    with Client(kserve.url(transport)) as client:  # binary tensors over HTTP
        assert client.ready() and client.ready("every") and not client.ready("nope")
        assert len(client.metadata("every")["inputs"]) == 13
        assert_echoed(client.infer("every", inputs), inputs)
        picked = client.infer("every", inputs, outputs=["out_FP16", "out_BYTES"])
        assert sorted(picked) == ["out_BYTES", "out_FP16"]
        with pytest.raises(InferenceServerError) as missing:
            client.infer("nope", inputs)
    assert missing.value.status == 404
    assert missing.value.message == "Model with name nope does not exist."


def test_kserve_refusals_come_through_as_its_words(kserve: Server) -> None:
    with Client(kserve.http, binary=False) as client:
        with pytest.raises(InferenceServerError) as refused:
            client.infer("every", every_inputs())
        assert refused.value.status == 400
        assert refused.value.message.startswith("Sending FP16 data via JSON is not supported")
        with pytest.raises(InferenceServerError) as unlisted:  # KServe has no repository index
            client.models()
        assert unlisted.value.status == 404


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_mlserver_every_datatype(mlserver: Server, transport: str) -> None:
    inputs = every_inputs(rows=2)
    # MLServer has no binary tensor extension: JSON tensors over HTTP (gRPC is always raw).
    with Client(mlserver.url(transport), binary=False) as client:
        assert client.ready() and client.ready("every") and not client.ready("nope")
        assert len(client.metadata("every")["inputs"]) == 13
        assert_echoed(client.infer("every", inputs), inputs)
        with pytest.raises(InferenceServerError) as missing:
            client.metadata("nope")
    assert missing.value.status == 404 and "nope" in missing.value.message


def test_mlserver_lists_its_models_and_refuses_binary_tensors(mlserver: Server) -> None:
    with Client(mlserver.http, retries=0) as client:
        assert [(m["name"], m["state"]) for m in client.models()] == [("every", "READY")]
        with pytest.raises(InferenceServerError) as refused:
            client.infer("every", every_inputs())
    assert refused.value.status >= 400  # an error, never a wrong answer
