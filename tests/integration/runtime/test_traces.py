"""Traces, seen from outside a real ``modelfleet serve`` process on 127.0.0.1: a W3C
``traceparent`` header (HTTP) or metadata entry (gRPC) puts its trace id in the request's JSON
log line; a malformed one is ignored; with ``--tracing`` the spans for fetch, load and infer
reach an OTLP receiver run by the test (``tests/helpers/otlp.py``), infer as a child of the
caller's span; with tracing off the process loads no OpenTelemetry SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from tests.helpers import onnx_models
from tests.helpers.otlp import Receiver, otlp_receiver
from tests.helpers.runtime import Served, free_port, serve_process, wait_until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SAMPLED = f"00-{TRACE}-{PARENT}-01"
ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
NARROW = ROW | {"shape": [1, 3], "data": [1, 2, 3]}  # 400: the model takes [batch, 4]
MALFORMED = {
    "upper case": f"00-{TRACE.upper()}-{PARENT}-01",
    "zero trace id": f"00-{'0' * 32}-{PARENT}-01",
    "zero parent id": f"00-{TRACE}-{'0' * 16}-01",
    "version ff": f"ff-{TRACE}-{PARENT}-01",
    "version 00 with more": f"{SAMPLED}-extra",
    "short trace id": f"00-{TRACE[:-1]}-{PARENT}-01",
    "not hex": f"00-{TRACE[:-1]}g-{PARENT}-01",
    "no flags": f"00-{TRACE}-{PARENT}",
    "garbage": "hello",
}


class Server:
    """One ``modelfleet serve`` with its HTTP and gRPC ports."""

    def __init__(self, served: Served, grpc_port: int) -> None:
        self.served = served
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.stub: Any = pb_grpc.GRPCInferenceServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def http(self, request_id: str, headers: list[tuple[str, str]], row: Any = ROW) -> int:
        body = {"id": request_id, "inputs": [row]}
        url = f"{self.served.url}/v2/models/adder/infer"
        return httpx.post(url, json=body, headers=headers, timeout=10).status_code

    def grpc(self, request_id: str, metadata: list[tuple[str, str]]) -> None:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="input0",
            datatype="FP32",
            shape=[1, 4],
            contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4]),
        )
        request = pb.ModelInferRequest(model_name="adder", id=request_id, inputs=[tensor])
        self.stub.ModelInfer(request, metadata=metadata, timeout=10)

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (stdout's ready message is not JSON)."""
        lines = self.served.output().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def request_line(self, request_id: str, text: str = "inference request answered") -> Any:
        """The log line of the request ``request_id`` whose message holds ``text``."""
        return wait_until(
            lambda: next(
                (
                    r
                    for r in self.records()
                    if r.get("request_id") == request_id and text in r["message"]
                ),
                None,
            ),
            10,
            f"the log line of request {request_id}",
        )


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("models") / "adder"
    return str(onnx_models.write_repository(root, {1: onnx_models.add_constant(1.0)}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_uri: str) -> Iterator[Server]:
    """At debug level, where every request has its line: sampled traces' lines are INFO."""
    grpc_port = free_port()
    args = ["--model-uri", model_uri, "--grpc-port", str(grpc_port), "--log-format", "json"]
    with serve_process(tmp_path_factory.mktemp("serve"), *args, "--log-level", "debug") as served:
        running = Server(served, grpc_port)
        yield running
        running.channel.close()


@pytest.mark.parametrize(("flags", "level"), [("01", "INFO"), ("00", "DEBUG")])
def test_http_traceparent_is_in_the_request_log_line(
    server: Server, flags: str, level: str
) -> None:
    rid = f"http-{flags}"
    status = server.http(rid, [("traceparent", f"00-{TRACE}-{PARENT}-{flags}")])
    assert status == 200
    line = server.request_line(rid)
    assert (line["trace_id"], line["level"], line["status"]) == (TRACE, level, 200), line


@pytest.mark.parametrize(("flags", "level"), [("01", "INFO"), ("00", "DEBUG")])
def test_grpc_traceparent_is_in_the_request_log_line(
    server: Server, flags: str, level: str
) -> None:
    rid = f"grpc-{flags}"
    server.grpc(rid, [("traceparent", f"00-{TRACE}-{PARENT}-{flags}"), ("tracestate", "k=v")])
    line = server.request_line(rid)
    assert (line["trace_id"], line["level"], line["protocol"]) == (TRACE, level, "grpc"), line


def test_a_later_version_of_the_header_is_read_as_the_w3c_asks(server: Server) -> None:
    status = server.http("future", [("traceparent", f"cc-{TRACE}-{PARENT}-01-what-comes-next")])
    assert status == 200
    assert server.request_line("future")["trace_id"] == TRACE


@pytest.mark.parametrize("value", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_traceparent_is_ignored(server: Server, value: str) -> None:
    rid = f"malformed-{value}"
    assert server.http(rid, [("traceparent", value)]) == 200
    line = server.request_line(rid)
    assert "trace_id" not in line and line["level"] == "DEBUG", line


def test_two_traceparent_headers_are_ignored(server: Server) -> None:
    assert server.http("twice", [("traceparent", SAMPLED), ("traceparent", SAMPLED)]) == 200
    assert "trace_id" not in server.request_line("twice")


def test_a_malformed_grpc_traceparent_is_ignored(server: Server) -> None:
    server.grpc("grpc-malformed", [("traceparent", MALFORMED["zero trace id"])])
    assert "trace_id" not in server.request_line("grpc-malformed")


def test_a_refused_request_carries_the_trace_id_on_its_line(server: Server) -> None:
    assert server.http("refused", [("traceparent", SAMPLED)], NARROW) == 400
    line = server.request_line("refused", "refused (400)")
    assert line["trace_id"] == TRACE, line


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, model_uri: str
) -> Iterator[tuple[Server, Receiver]]:
    """``--tracing`` on, exporting to the test's OTLP receiver (the standard OTEL_* variables;
    a short batch delay so that spans arrive in a fraction of a second)."""
    grpc_port = free_port()
    args = ["--model-uri", model_uri, "--grpc-port", str(grpc_port), "--log-format", "json"]
    with otlp_receiver() as receiver:
        env = {
            "MODELFLEET_TRACING": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "traces-test",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        with serve_process(tmp_path_factory.mktemp("traced"), *args, env=env) as served:
            running = Server(served, grpc_port)
            yield running, receiver
            running.channel.close()


def test_fetch_and_load_spans_at_startup(traced: tuple[Server, Receiver]) -> None:
    _, receiver = traced
    root = receiver.wait_for("load_version span", lambda s: s.name == "load_version")
    assert root.parent_span_id == "" and root.attributes["modelfleet.version"] == 1
    assert root.resource["service.name"] == "traces-test"
    assert root.resource["modelfleet.model"] == "adder"
    fetch = receiver.wait_for("fetch span", lambda s: s.name == "fetch")
    load = receiver.wait_for("load span", lambda s: s.name == "load")
    for child in (fetch, load):
        assert (child.trace_id, child.parent_span_id) == (root.trace_id, root.span_id)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_infer_span_is_a_child_of_the_callers_span(
    traced: tuple[Server, Receiver], transport: str
) -> None:
    server, receiver = traced
    trace_id = TRACE[:-4] + ("0001" if transport == "http" else "0002")
    traceparent = f"00-{trace_id}-{PARENT}-01"
    if transport == "http":
        assert server.http("span-http", [("traceparent", traceparent)]) == 200
    else:
        server.grpc("span-grpc", [("traceparent", traceparent), ("tracestate", "vendor=x")])
    span = receiver.wait_for("infer span", lambda s: s.trace_id == trace_id)
    assert (span.name, span.parent_span_id, span.kind) == ("infer", PARENT, 2)  # 2: SERVER
    keys = ("protocol", "model", "version", "status_code")
    found = {key: span.attributes[f"modelfleet.{key}"] for key in keys}
    protocol = "v2" if transport == "http" else "grpc"
    assert found == {"protocol": protocol, "model": "adder", "version": "1", "status_code": 200}
    assert server.request_line(f"span-{transport}")["trace_id"] == trace_id


def test_a_request_without_traceparent_starts_its_own_trace(
    traced: tuple[Server, Receiver],
) -> None:
    server, receiver = traced
    assert server.http("no-parent", [], NARROW) == 400
    line = server.request_line("no-parent", "refused (400)")
    span = receiver.wait_for("root infer span", lambda s: s.trace_id == line["trace_id"])
    assert (span.name, span.parent_span_id) == ("infer", "")
    assert span.attributes["modelfleet.status_code"] == 400 and span.status_code == 0


def test_tracing_with_an_unknown_exporter_fails_the_start(tmp_path: Path) -> None:
    env = {"MODELFLEET_TRACING": "true", "OTEL_TRACES_EXPORTER": "nosuch"}
    command = [sys.executable, "-m", "modelfleet_runtime.cli", "serve", "--port", "0"]
    result = subprocess.run(
        command, env=env | _base_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "no trace exporter 'nosuch' is installed" in result.stderr


OFF_PROBE = """
import asyncio, sys, httpx
from modelfleet_runtime.config import Settings
from modelfleet_runtime.server import build

async def main():
    app, _ = build(Settings(model_uri=sys.argv[1], grpc_port=None))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        async with app.app.router.lifespan_context(app.app):
            while (await client.get("/v2/health/ready")).status_code != 200:
                await asyncio.sleep(0.05)
            headers = {"traceparent": sys.argv[2]}
            body = {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32",
                                "data": [1, 2, 3, 4]}]}
            answer = await client.post("/v2/models/adder/infer", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
    ours = ("modelfleet_runtime.otel", "opentelemetry.sdk", "opentelemetry.exporter")
    print(sorted(m for m in sys.modules if m.startswith(ours)))

asyncio.run(main())
"""


def test_with_tracing_off_no_opentelemetry_sdk_is_loaded(tmp_path: Path, model_uri: str) -> None:
    """Loading a model and serving a traced request, in a fresh interpreter, loads neither
    ``otel.py`` nor OpenTelemetry's SDK or exporters. (FastAPI, from 0.165, imports the
    OpenTelemetry API itself, for its own telemetry, which stays off while no global provider
    is set; the runtime never sets one.)"""
    result = subprocess.run(
        [sys.executable, "-c", OFF_PROBE, model_uri, SAMPLED],
        env=_base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]", result.stdout  # after the ready message


def _base_env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELFLEET_"))}
    return keep | {"MODELFLEET_MODEL_DIR": str(tmp_path / "models")}
