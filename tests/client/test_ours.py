"""The client against our own server, as real processes on 127.0.0.1: every datatype both
ways over binary HTTP, JSON HTTP and gRPC, from the blocking and the async client; outputs,
versions, one-array inputs, metadata, readiness, the repository index, tokens, the server's
error messages, and an image-sized tensor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelfleet_client import AsyncClient, Client, InferenceServerError
from tests.client.conftest import TOKEN, Server, assert_echoed, every_inputs
from tests.helpers import onnx_models
from tests.helpers.runtime import free_port, serve_process

TRANSPORTS = ["http", "http-json", "grpc"]


def client(server: Server, transport: str, **options: Any) -> Client:
    return Client(server.url(transport), binary=transport != "http-json", **options)


def async_client(server: Server, transport: str, **options: Any) -> AsyncClient:
    return AsyncClient(server.url(transport), binary=transport != "http-json", **options)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_datatype_round_trips(every: Server, transport: str) -> None:
    inputs = every_inputs(rows=2)
    with client(every, transport) as c:
        assert_echoed(c.infer("every", inputs), inputs)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_datatype_round_trips_async(every: Server, transport: str) -> None:
    inputs = every_inputs(rows=2)
    async with async_client(every, transport) as c:
        assert_echoed(await c.infer("every", inputs), inputs)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_outputs_names_the_outputs_wanted(every: Server, transport: str) -> None:
    with client(every, transport) as c:
        found = c.infer("every", every_inputs(), outputs=["out_FP16", "out_BYTES"])
    assert sorted(found) == ["out_BYTES", "out_FP16"]
    assert found["out_BYTES"].tolist() == [[b"a", "h\u00e9llo".encode(), b""]]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_versions_one_array_inputs_and_tokens(adder: Server, transport: str) -> None:
    row = np.array([[1, 2, 3, 4]], dtype=np.float32)
    with client(adder, transport, token=TOKEN) as c:
        newest = c.infer("adder", row)  # one array: the input's name comes from metadata
        first = c.infer("adder", {"input0": row}, version=1)
        second = c.infer("adder", row, version="2")
    assert newest["output0"].tolist() == [[3, 4, 5, 6]] == second["output0"].tolist()
    assert first["output0"].tolist() == [[2, 3, 4, 5]]
    with client(adder, transport, retries=0) as anonymous:
        with pytest.raises(InferenceServerError) as refused:
            anonymous.infer("adder", {"input0": row})
    assert refused.value.status == 401
    assert refused.value.message.endswith("missing bearer token")  # HTTP says "unauthorized: "


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_metadata_readiness_and_the_repository_index(adder: Server, transport: str) -> None:
    with client(adder, transport, token=TOKEN) as c:
        assert c.ready() and c.ready("adder") and c.ready("adder", version=1)
        assert not c.ready("nope") and not c.ready("adder", version=7)
        c.wait_ready(5, "adder")
        meta = c.metadata("adder")
        assert (meta["name"], meta["versions"], meta["platform"]) == (
            "adder",
            ["1", "2"],
            "onnxruntime_onnx",
        )
        assert meta["inputs"] == [{"name": "input0", "datatype": "FP32", "shape": [-1, 4]}]
        assert c.metadata("adder", version=1)["outputs"][0]["name"] == "output0"
        assert c.server_metadata()["name"] == "modelfleet"
        if transport == "grpc":
            with pytest.raises(InferenceServerError) as unlisted:
                c.models()
            assert unlisted.value.status == 501 and "http://" in unlisted.value.message
        else:
            index = {(m["name"], m["version"], m["state"]) for m in c.models()}
            assert index == {("adder", "1", "READY"), ("adder", "2", "READY")}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_errors_carry_the_servers_status_and_message(every: Server, transport: str) -> None:
    inputs = every_inputs()
    with client(every, transport) as c:
        with pytest.raises(InferenceServerError) as missing:
            c.infer("nope", inputs)
        assert (missing.value.status, missing.value.message) == (404, "model 'nope' not found")
        with pytest.raises(InferenceServerError) as wrong:
            c.infer("every", inputs | {"in_FP32": inputs["in_FP32"].astype(np.float64)})
        assert wrong.value.status == 400
        assert wrong.value.message == "input 'in_FP32': expected datatype FP32, got FP64"
        with pytest.raises(InferenceServerError) as several:
            c.infer("every", inputs["in_FP32"])  # one array for a model with 13 inputs
        assert several.value.status == 400 and "pass a dict" in several.value.message
        with pytest.raises(InferenceServerError) as local:
            c.infer("every", inputs | {"in_FP32": np.zeros((1, 3), dtype=np.complex64)})
        assert local.value.status == 400 and "complex64" in local.value.message


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_image_sized_tensor_comes_back_unchanged(big: Server, transport: str) -> None:
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with client(big, transport) as c:
        found = c.infer("big", image)["output0"]
    np.testing.assert_array_equal(found, image)
    assert found.dtype == np.float32


def test_a_transposed_array_is_sent_in_its_logical_order(big: Server) -> None:
    """Arrays that are not C-ordered (views, transposes) are sent as their values, not their
    memory."""
    image = np.arange(224 * 224 * 3, dtype=np.float32).reshape(224, 224, 3, 1).T
    with Client(big.http) as c:
        np.testing.assert_array_equal(c.infer("big", image)["output0"], image)


def test_wait_ready_returns_once_a_starting_server_is_ready(tmp_path: Path) -> None:
    repo = onnx_models.write_repository(tmp_path / "late", {1: onnx_models.add_constant(1.0)})
    port = free_port()
    args = ["--model-uri", str(repo), "--grpc-port", str(port)]
    with serve_process(tmp_path, *args, wait_ready=False) as served:
        with Client(served.url) as http, Client(f"grpc://127.0.0.1:{port}") as grpc:
            http.wait_ready(60)
            grpc.wait_ready(60, "late")
            assert http.ready("late") and grpc.ready()


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_wait_ready_gives_up_with_the_last_reason(scheme: str) -> None:
    with Client(f"{scheme}://127.0.0.1:{free_port()}", timeout=2) as c:
        assert not c.ready()
        with pytest.raises(InferenceServerError) as late:
            c.wait_ready(0.5)
    assert late.value.status == 503 and late.value.message.startswith("not ready after 0.5 s")


def test_bad_urls_and_tokens_are_refused_at_once() -> None:
    for url in ("ftp://host", "http://", "grpc://host:1/path", "localhost:8080"):
        with pytest.raises(ValueError, match="url"):
            Client(url)
    with pytest.raises(ValueError, match="line breaks"):
        Client("http://127.0.0.1:1", token="a\r\nX-Injected: 1")
    assert "secret" not in repr(Client("http://127.0.0.1:1", token="secret"))
