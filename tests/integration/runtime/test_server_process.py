"""``modelfleet serve`` as a real uvicorn process on 127.0.0.1: the bundled example, body
limits over a real socket, graceful shutdown (S3, S13), a model that fails to load (S5), and
gRPC beside HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from tests.helpers import onnx_models
from tests.helpers.runtime import GRPC_TRANSPORTS, free_port, serve_process, wait_until

ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}


def test_serve_with_no_arguments_serves_iris_and_prints_a_working_curl(tmp_path: Path) -> None:
    with serve_process(tmp_path) as served:
        printed = wait_until(
            lambda: re.search(r"curl -s (\S+) .* -d '(.+)'", served.output()), 10, "curl line"
        )
        url, body = printed.group(1), json.loads(printed.group(2))
        assert url.endswith("/v2/models/iris/infer")
        answer = httpx.post(url.replace("8080", served.url.rsplit(":", 1)[1]), json=body)
        assert answer.status_code == 200, answer.text
        labels = answer.json()["outputs"][0]
        assert labels["name"] == "label"
        assert labels["data"] == [0, 2]  # setosa, virginica


def test_log_lines_are_json_with_the_model(tmp_path: Path) -> None:
    with serve_process(tmp_path) as served:
        httpx.post(f"{served.url}/v2/models/iris/infer", json={"inputs": [ROW | {"name": "x"}]})
    records = [json.loads(line) for line in served.output().splitlines() if line.startswith("{")]
    assert records, served.output()
    assert all({"level", "logger", "message"} <= r.keys() for r in records)
    assert any(r.get("model") == "iris" and "loaded" in r["message"] for r in records)


def _raw_request(port: int, head: bytes, body_chunks: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        return _read_response(sock)


def _read_response(sock: socket.socket) -> bytes:
    """Read one HTTP response: headers, then content-length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    while length and len(body) < int(length.group(1)):
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return head + b"\r\n\r\n" + body


def test_oversized_bodies_get_413_with_and_without_content_length(tmp_path: Path) -> None:
    limit = 1024 * 1024
    with serve_process(tmp_path, "--max-body-size", str(limit)) as served:
        port = int(served.url.rsplit(":", 1)[1])
        url = f"{served.url}/v2/models/iris/infer"
        sized = httpx.post(url, content=b"x" * (limit + 1))
        assert (sized.status_code, set(sized.json())) == (413, {"error"})
        head = (
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        )
        piece = b"x" * 65536
        chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        answer = _raw_request(port, head, [chunk] * 20 + [b"0\r\n\r\n"])
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'{"error":' in answer
        assert httpx.get(f"{served.url}/v2/health/live").status_code == 200


def test_sigterm_lets_16_in_flight_requests_finish_and_exits_0(tmp_path: Path) -> None:
    # ~1 s a request (0.13 s at the default steps): every request is still running when the
    # last one arrives, even on a loaded machine, so "N in flight" is reached for sure.
    repo = onnx_models.write_repository(tmp_path / "slow", {1: onnx_models.slow(steps=96)})
    args = ["--model-uri", str(repo), "--inference-threads", "16", "--intra-op-threads", "1"]
    # 16 requests of ~1 s on 2 cores can outlast the default 25 s grace on a loaded machine:
    # the test is about draining, so give the drain all the time it needs.
    args += ["--grace-period", "240"]
    with serve_process(tmp_path, *args) as served:
        url = f"{served.url}/v2/models/slow/infer"
        with ThreadPoolExecutor(16) as pool:
            futures = [
                pool.submit(httpx.post, url, json={"inputs": [ROW]}, timeout=240) for _ in range(16)
            ]
            wait_until(lambda: _in_flight(served.url) >= 16, 20, "16 requests in flight")
            served.process.send_signal(signal.SIGTERM)
            answers = [f.result() for f in futures]
        assert [a.status_code for a in answers] == [200] * 16
        assert served.process.wait(timeout=30) == 0
        try:
            refused = httpx.get(f"{served.url}/v2/health/ready", timeout=2).status_code
        except httpx.TransportError:
            refused = 0
        assert refused in (0, 503)


def _in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(r'modelfleet_requests_in_flight\{model="slow"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_a_model_that_fails_to_load_leaves_the_server_live_but_not_ready(tmp_path: Path) -> None:
    repo = tmp_path / "broken"
    (repo / "1").mkdir(parents=True)
    (repo / "1" / "model.onnx").write_bytes(b"this is not an onnx model")
    args = ["--model-uri", str(repo), "--poll-interval", "0.2"]
    with serve_process(tmp_path, *args, wait_ready=False) as served:
        ready = f"{served.url}/v2/health/ready"
        wait_until(lambda: "failed to load" in served.output(), 20, "load failure logged")
        assert httpx.get(f"{served.url}/v2/health/live").status_code == 200
        assert httpx.get(ready).status_code == 503
        assert httpx.get(f"{served.url}/v2/models/broken/ready").status_code == 503
        infer = httpx.post(f"{served.url}/v2/models/broken/infer", json={"inputs": [ROW]})
        assert infer.status_code == 503
        assert "ModelLoadFailed" in infer.json()["error"]
        metrics = httpx.get(f"{served.url}/metrics").text
        assert 'modelfleet_model_load_failures_total{model="broken",reason="ModelLoadFailed"' in (
            metrics.replace(',version="1"', "")
        )
        # Fix the object in storage: the next poll loads it.
        (repo / "1" / "model.onnx").write_bytes(onnx_models.add_constant(1.0))
        wait_until(lambda: httpx.get(ready).status_code == 200, 20, "ready after the fix")
        assert served.process.poll() is None


def test_a_refused_model_uri_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelfleet_runtime.cli", "serve", "--model-uri",
         "http://169.254.169.254/latest/model.onnx", "--model-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "NotAllowed" in done.stderr and "scheme 'http' is not allowed" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("transport", GRPC_TRANSPORTS)
def test_grpc_serves_beside_http_and_drains_on_sigterm(tmp_path: Path, transport: str) -> None:
    """The process wiring: gRPC on its own port, the same model, in-flight gRPC calls finish
    on SIGTERM, and the process still exits 0; on both transports."""
    # ~1 s a request (0.13 s at the default steps): every request is still running when the
    # last one arrives, even on a loaded machine, so "N in flight" is reached for sure.
    repo = onnx_models.write_repository(tmp_path / "slow", {1: onnx_models.slow(steps=96)})
    port = free_port()
    args = ["--model-uri", str(repo), "--inference-threads", "4", "--grpc-port", str(port)]
    args += ["--grace-period", "240"]  # as above: the drain, not the machine's speed, is tested
    args += ["--grpc-transport", transport]
    with serve_process(tmp_path, *args) as served:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            assert stub.ServerReady(pb.ServerReadyRequest()).ready
            request = pb.ModelInferRequest(model_name="slow")
            request.inputs.add(name="input0", datatype="FP32", shape=[1, 4])
            request.inputs[0].contents.fp32_contents.extend([1, 2, 3, 4])
            with ThreadPoolExecutor(4) as pool:
                calls = [pool.submit(stub.ModelInfer, request, timeout=240) for _ in range(4)]
                wait_until(lambda: _in_flight(served.url) >= 4, 20, "4 gRPC calls in flight")
                served.process.send_signal(signal.SIGTERM)
                replies = [c.result() for c in calls]
        assert [r.model_name for r in replies] == ["slow"] * 4
        assert all(len(r.raw_output_contents) == 1 for r in replies)
        assert served.process.wait(timeout=30) == 0
        assert f"gRPC (Open Inference Protocol) listening on 127.0.0.1:{port}" in served.output()


@pytest.mark.parametrize("transport", GRPC_TRANSPORTS)
def test_a_taken_grpc_port_fails_the_start_and_says_so(tmp_path: Path, transport: str) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "modelfleet_runtime.cli", "serve", "--port", "0"]
        command += ["--grpc-port", str(port), "--grpc-transport", transport]
        env = {**os.environ, "MODELFLEET_MODEL_DIR": str(tmp_path / "cache")}
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in done.stdout + done.stderr
