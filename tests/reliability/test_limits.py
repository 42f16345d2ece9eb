"""S2 and S3 on the real server and app: a shape-product overflow is refused before any
allocation (RSS of the server process grows < 10 MB), JSON nesting deeper than 100 is a 400,
``Inference-Header-Content-Length`` out of range is a 400, and oversized bodies keep the
server's memory bounded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.helpers import onnx_models
from tests.helpers.runtime import serve_process

from .conftest import OpenApp

ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
MB = 2**20


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


def test_shape_overflow_is_refused_before_allocation(tmp_path: Path) -> None:
    repo = onnx_models.write_repository(tmp_path / "m", {1: onnx_models.add_constant(1.0)})
    args = ["--model-uri", str(repo), "--max-body-size", str(MB), "--poll-interval", "0"]
    with serve_process(tmp_path, *args) as served, httpx.Client(timeout=30) as client:
        url = f"{served.url}/v2/models/m/infer"
        huge = [2**31, 2**31]
        json_body = {"inputs": [ROW | {"shape": huge}]}
        header = json.dumps(
            {"inputs": [{"name": "input0", "shape": huge, "datatype": "FP32",
                         "parameters": {"binary_data_size": 16}}]}
        ).encode()  # fmt: skip
        binary = {"inference-header-content-length": str(len(header))}
        for _ in range(20):  # warm up every path first, so the baseline is steady
            assert client.post(url, json={"inputs": [ROW]}).status_code == 200
            assert client.post(url, json=json_body).status_code == 400
        before = rss_mb(served.process.pid)
        for _ in range(50):
            answer = client.post(url, json=json_body)
            assert answer.status_code == 400
            assert "more than the body limit allows" in answer.json()["error"]
            answer = client.post(url, content=header + b"\0" * 16, headers=binary)
            assert answer.status_code == 400, answer.text
        grown = rss_mb(served.process.pid) - before
        assert grown < 10, f"RSS grew {grown:.1f} MB"
        # Bodies just over the limit, with and without a length: 413, memory bounded.
        for _ in range(20):
            assert client.post(url, content=b"x" * (MB + 1)).status_code == 413
            chunks = iter([b"x" * 65536] * 17)
            assert client.post(url, content=chunks).status_code == 413
        grown = rss_mb(served.process.pid) - before
        assert grown < 50, f"RSS grew {grown:.1f} MB after oversized bodies"
        assert client.get(f"{served.url}/v2/health/live").status_code == 200


def nested_list(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


def nested_object(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def infer_with(depth: int, where: str) -> dict[str, Any]:
    """A valid request whose nesting reaches ``depth`` levels in total at ``where``."""
    body: dict[str, Any] = {"inputs": [dict(ROW)]}
    if where == "parameters":  # the body and "parameters" are 2 of the levels
        body["parameters"] = {"p": nested_object(depth - 2)}
    elif where == "input parameters":  # body, inputs, the input, parameters
        body["inputs"][0]["parameters"] = {"p": nested_object(depth - 4)}
    else:  # "outputs": body, outputs list, output, parameters
        body["outputs"] = [{"name": "output0", "parameters": {"p": nested_list(depth - 4)}}]
    return body


@pytest.mark.parametrize("where", ["parameters", "input parameters", "outputs"])
async def test_nesting_deeper_than_100_is_a_400(open_app: OpenApp, where: str) -> None:
    async with open_app("m", {1: onnx_models.add_constant(1.0)}) as served:
        c = served.client
        at_limit = await c.post("/v2/models/m/infer", content=json.dumps(infer_with(100, where)))
        assert at_limit.status_code == 200, at_limit.text
        for depth in (101, 500, 900):
            body = json.dumps(infer_with(depth, where))
            answer = await c.post("/v2/models/m/infer", content=body)
            assert answer.status_code == 400, (depth, answer.text)
            assert set(answer.json()) == {"error"}
        v1 = {"instances": [[1, 2, 3, 4]], "extra": nested_object(150)}
        answer = await c.post("/v1/models/m:predict", content=json.dumps(v1))
        assert answer.status_code == 400, answer.text
        assert "nests deeper than 100" in answer.json()["error"]
        assert (await c.get("/v2/health/live")).status_code == 200


@pytest.mark.parametrize("value", ["-1", "0", "99999", "12abc", "", "1e3", "4294967296"])
async def test_inference_header_length_out_of_range(open_app: OpenApp, value: str) -> None:
    async with open_app("m", {1: onnx_models.add_constant(1.0)}) as served:
        body = json.dumps({"inputs": [ROW]}).encode()
        headers = {"inference-header-content-length": value}
        answer = await served.client.post("/v2/models/m/infer", content=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert "Inference-Header-Content-Length" in answer.json()["error"]


async def test_out_of_range_floats_are_a_400_not_inf(open_app: OpenApp) -> None:
    async with open_app("m", {1: onnx_models.add_constant(1.0)}) as served:
        body = {"inputs": [ROW | {"data": [1e39, 1, 2, 3]}]}
        answer = await served.client.post("/v2/models/m/infer", json=body)
        assert answer.status_code == 400, answer.text
        assert "out of range for FP32" in answer.json()["error"]
