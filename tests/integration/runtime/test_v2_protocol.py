"""The Open Inference Protocol V2 over the real app: every endpoint and datatype, binary
tensors, requested outputs, and the answers to bad requests (RELIABILITY S1, S2)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
from onnx import TensorProto

from tests.helpers import onnx_models
from tests.helpers.runtime import InProcess
from tests.integration.runtime.conftest import OpenClient

ROW = [1.0, 2.0, 3.0, 4.0]


def infer_body(data: Any, shape: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    tensor = {"name": "input0", "shape": shape or [1, 4], "datatype": "FP32", "data": data}
    return {"inputs": [tensor], **extra}


async def test_health_and_server_metadata(adder: InProcess) -> None:
    client = adder.client
    assert (await client.get("/v2/health/live")).status_code == 200
    assert (await client.get("/v2/health/ready")).status_code == 200
    meta = (await client.get("/v2")).json()
    assert meta["name"] == "modelfleet"
    assert "binary_tensor_data" in meta["extensions"]


async def test_model_metadata_lists_versions_and_signature(adder: InProcess) -> None:
    meta = (await adder.client.get("/v2/models/adder")).json()
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input0", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "output0", "datatype": "FP32", "shape": [-1, 4]}]
    one = (await adder.client.get("/v2/models/adder/versions/1")).json()
    assert one["versions"] == ["1"]


async def test_readiness_per_model_and_version(adder: InProcess) -> None:
    client = adder.client
    assert (await client.get("/v2/models/adder/ready")).status_code == 200
    assert (await client.get("/v2/models/adder/versions/2/ready")).status_code == 200
    assert (await client.get("/v2/models/adder/versions/7/ready")).status_code == 404
    assert (await client.get("/v2/models/other/ready")).status_code == 404


async def test_infer_uses_newest_version_unless_one_is_named(adder: InProcess) -> None:
    newest = await adder.client.post("/v2/models/adder/infer", json=infer_body(ROW, id="r-1"))
    assert newest.status_code == 200, newest.text
    body = newest.json()
    assert body["model_version"] == "2"
    assert body["id"] == "r-1"
    assert body["outputs"][0]["data"] == [3.0, 4.0, 5.0, 6.0]
    assert body["outputs"][0]["shape"] == [1, 4]
    first = await adder.client.post("/v2/models/adder/versions/1/infer", json=infer_body(ROW))
    assert first.json()["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]


async def test_nested_data_is_accepted(adder: InProcess) -> None:
    rows = [ROW, [0.0, 0.0, 0.0, 0.0]]
    answer = await adder.client.post("/v2/models/adder/infer", json=infer_body(rows, [2, 4]))
    assert answer.json()["outputs"][0]["data"] == [3.0, 4.0, 5.0, 6.0, 2.0, 2.0, 2.0, 2.0]


DATATYPE_CASES: list[tuple[int, str, list[Any]]] = [
    (TensorProto.BOOL, "BOOL", [True, False, True]),
    (TensorProto.UINT8, "UINT8", [0, 7, 255]),
    (TensorProto.UINT16, "UINT16", [0, 7, 65535]),
    (TensorProto.UINT32, "UINT32", [0, 7, 2**32 - 1]),
    (TensorProto.UINT64, "UINT64", [0, 7, 2**63]),
    (TensorProto.INT8, "INT8", [-128, 0, 127]),
    (TensorProto.INT16, "INT16", [-(2**15), 0, 2**15 - 1]),
    (TensorProto.INT32, "INT32", [-(2**31), 0, 2**31 - 1]),
    (TensorProto.INT64, "INT64", [-(2**63), 0, 2**63 - 1]),
    (TensorProto.FLOAT16, "FP16", [0.5, -1.0, 2.0]),
    (TensorProto.FLOAT, "FP32", [0.5, -1.25, 3.0]),
    (TensorProto.DOUBLE, "FP64", [0.1, -1e300, 3.0]),
    (TensorProto.STRING, "BYTES", ["a", "héllo", ""]),
]


@pytest.mark.parametrize(("onnx_type", "datatype", "data"), DATATYPE_CASES)
async def test_every_datatype_round_trips_in_json_and_binary(
    open_client: OpenClient, onnx_type: int, datatype: str, data: list[Any]
) -> None:
    async with open_client("echo", {1: onnx_models.identity(onnx_type)}) as served:
        tensor = {"name": "input0", "shape": [1, 3], "datatype": datatype, "data": data}
        answer = await served.client.post("/v2/models/echo/infer", json={"inputs": [tensor]})
        assert answer.status_code == 200, answer.text
        out = answer.json()["outputs"][0]
        assert (out["datatype"], out["shape"], out["data"]) == (datatype, [1, 3], data)
        binary = await _binary_round_trip(served, datatype, data)
        assert binary == data


async def _binary_round_trip(served: InProcess, datatype: str, data: list[Any]) -> list[Any]:
    """Send ``data`` as a binary tensor, ask for the output as binary, decode it."""
    raw = encode_binary(datatype, data)
    header = {
        "inputs": [
            {"name": "input0", "shape": [1, 3], "datatype": datatype,
             "parameters": {"binary_data_size": len(raw)}},
        ],
        "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
    }  # fmt: skip
    head = orjson.dumps(header)
    answer = await served.client.post(
        "/v2/models/echo/infer",
        content=head + raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert answer.status_code == 200, answer.text
    split = int(answer.headers["inference-header-content-length"])
    meta = orjson.loads(answer.content[:split])["outputs"][0]
    assert meta["parameters"]["binary_data_size"] == len(answer.content) - split
    return decode_binary(datatype, answer.content[split:])


def encode_binary(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in data)
    return np.asarray(data, dtype=_NUMPY[datatype]).tobytes()


def decode_binary(datatype: str, raw: bytes) -> list[Any]:
    if datatype != "BYTES":
        values: list[Any] = np.frombuffer(raw, dtype=_NUMPY[datatype]).tolist()
        return values
    out, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        out.append(raw[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return out


_NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip


async def test_requested_outputs_only_and_binary_for_all(open_client: OpenClient) -> None:
    async with open_client("pair", {1: onnx_models.two_in_two_out()}) as served:
        inputs = [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [5, 5, 5, 5]},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        ]
        body = {"inputs": inputs, "outputs": [{"name": "diff"}]}
        answer = (await served.client.post("/v2/models/pair/infer", json=body)).json()
        assert [o["name"] for o in answer["outputs"]] == ["diff"]
        assert answer["outputs"][0]["data"] == [4, 3, 2, 1]
        all_binary = {"inputs": inputs, "parameters": {"binary_data_output": True}}
        raw = await served.client.post("/v2/models/pair/infer", json=all_binary)
        split = int(raw.headers["inference-header-content-length"])
        outputs = orjson.loads(raw.content[:split])["outputs"]
        assert [o["parameters"]["binary_data_size"] for o in outputs] == [16, 16]
        assert np.frombuffer(raw.content[split:], np.float32).tolist() == [6, 7, 8, 9, 4, 3, 2, 1]


BAD_REQUESTS: list[tuple[str, Any, int, str]] = [
    ("not json", b"{nope", 400, "not valid JSON"),
    ("a list", [1, 2], 400, "must be a JSON object"),
    ("no inputs", {"id": "x"}, 400, "non-empty 'inputs'"),
    ("inputs not a list", {"inputs": {"a": 1}}, 400, "non-empty 'inputs'"),
    ("input not an object", {"inputs": [3]}, 400, "inputs[0] must be a JSON object"),
    ("no name", {"inputs": [{"shape": [1, 4], "datatype": "FP32", "data": ROW}]}, 400, "'name'"),
    ("unknown datatype", {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP8",
                                      "data": ROW}]}, 400, "unknown datatype"),
    ("wrong datatype", {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "INT64",
                                    "data": [1, 2, 3, 4]}]}, 400,
     "expected datatype FP32, got INT64"),
    ("count mismatch", infer_body([1.0, 2.0, 3.0]), 400, "holds 4 elements but data has 3"),
    ("wrong shape", infer_body([1.0] * 6, [2, 3]), 400, "expected shape [-1, 4], got [2, 3]"),
    ("negative dim", infer_body(ROW, [-1, 4]), 400, "negative dimension"),
    ("fractional dims", infer_body(ROW, [1.5, 4]), 400, "shape must be a list of integers"),
    ("binary size in JSON", {"inputs": [{"name": "input0", "shape": [0, 4], "datatype": "FP32",
                                         "data": [], "parameters": {"binary_data_size": 0}}]},
     400, "needs binary data"),
    ("overflow", infer_body(ROW, [2**31, 2**31]), 400, "more than the body limit allows"),
    ("zero dim beside huge ones", infer_body([], [0, 2**62]), 400, "dimensions larger than"),
    ("strings as floats", infer_body(["a", "b", "c", "d"]), 400, "cannot hold"),
    ("ragged", infer_body([[1.0, 2.0], [3.0]], [1, 4]), 400, "input 'input0'"),
    ("missing data", {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32"}]}, 400,
     "has no 'data'"),
    ("missing input", {"inputs": [{"name": "other", "shape": [1, 4], "datatype": "FP32",
                                   "data": ROW}]}, 400, "missing required input(s) ['input0']"),
    ("duplicate input", {"inputs": [infer_body(ROW)["inputs"][0]] * 2}, 400, "more than once"),
    ("unknown output", infer_body(ROW, outputs=[{"name": "nope"}]), 400, "unknown output(s)"),
    ("id not a string", infer_body(ROW, id=5), 400, "'id' must be a string"),
    ("bad header length", None, 400, "Inference-Header-Content-Length"),
]  # fmt: skip


# What JSON means by a number is what the server takes (the OpenAPI document says so and
# schemathesis holds it to that): 2.0 is the integer 2, 1e30 may be written out in digits,
# true and false are 1 and 0 among numbers; no output named ([]) means all of them. (The
# default version, 2, adds 2.)
ACCEPTED = [
    ("integral float dims", infer_body(ROW, [1.0, 4.0]), [3.0, 4.0, 5.0, 6.0]),
    ("booleans as numbers", infer_body([True, False, True, 2.5]), [3.0, 2.0, 3.0, 4.5]),
    ("wide integer", infer_body([10**30, 0, 0, 0]), [1e30, 2.0, 2.0, 2.0]),
    ("empty outputs", infer_body(ROW, outputs=[]), [3.0, 4.0, 5.0, 6.0]),
]


@pytest.mark.parametrize(("case", "body", "expected"), ACCEPTED)
async def test_json_numbers_are_taken_as_json_means_them(
    adder: InProcess, case: str, body: dict[str, Any], expected: list[float]
) -> None:
    answer = await adder.client.post("/v2/models/adder/infer", json=body)
    assert answer.status_code == 200, (case, answer.text)
    assert answer.json()["outputs"][0]["data"] == pytest.approx(expected, rel=1e-6), case


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_REQUESTS)
async def test_bad_requests_get_a_clear_error_and_the_server_stays_up(
    adder: InProcess, case: str, body: Any, status: int, message: str
) -> None:
    headers = {}
    if body is None:  # binary header pointing past the body
        body, headers = infer_body(ROW), {"Inference-Header-Content-Length": "99999"}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    answer = await adder.client.post("/v2/models/adder/infer", content=content, headers=headers)
    assert answer.status_code == status, (case, answer.text)
    assert message in answer.json()["error"], case
    assert set(answer.json()) == {"error"}
    assert (await adder.client.get("/v2/health/live")).status_code == 200


async def test_unknown_model_version_and_method(adder: InProcess) -> None:
    client = adder.client
    unknown = await client.post("/v2/models/nope/infer", json=infer_body(ROW))
    assert (unknown.status_code, unknown.json()) == (404, {"error": "model 'nope' not found"})
    version = await client.post("/v2/models/adder/versions/9/infer", json=infer_body(ROW))
    assert version.status_code == 404
    assert "version 9" in version.json()["error"]
    bad_version = await client.post("/v2/models/adder/versions/x/infer", json=infer_body(ROW))
    assert bad_version.status_code == 400
    wrong_method = await client.get("/v2/models/adder/infer")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()
    no_route = await client.get("/v3/anything")
    assert (no_route.status_code, set(no_route.json())) == (404, {"error"})


async def test_metrics_count_requests_by_model_version_protocol_status(adder: InProcess) -> None:
    await adder.client.post("/v2/models/adder/infer", json=infer_body(ROW))
    await adder.client.post("/v2/models/adder/infer", json=infer_body([1.0]))
    await adder.client.post("/v2/models/unheard-of/infer", json=infer_body(ROW))
    await adder.client.get("/v2/health/ready")
    text = (await adder.client.get("/metrics")).text
    assert (
        'modelfleet_requests_total{model="adder",protocol="v2",status="200",version="2"} 1.0'
        in text
    )
    assert (
        'modelfleet_requests_total{model="adder",protocol="v2",status="400",version="2"} 1.0'
        in text
    )
    assert 'model="unknown",protocol="v2",status="404"' in text
    assert "unheard-of" not in text
    assert "health" not in text
    assert "modelfleet_request_duration_seconds_bucket" in text


async def test_docs_are_served_without_internet(adder: InProcess) -> None:
    page = await adder.client.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    script = await adder.client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert len(script.content) > 100_000
    schema = (await adder.client.get("/openapi.json")).json()
    assert "/v2/models/{name}/infer" in schema["paths"]
    assert "/v1/models/{name}:predict" in schema["paths"]
