"""One request envelope for every transport (``DataPlane.handle``): HTTP V2, V1 and gRPC log a
refused request in the same words under the client's own request id, a failure inside the
model is logged with its traceback, and each transport answers with its own form of the same
status and message."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_runtime.logs import ContextFilter
from modelfleet_runtime.models.onnx import OnnxModel
from tests.helpers import onnx_models
from tests.helpers.runtime import InProcess
from tests.integration.runtime.conftest import Open
from tests.integration.runtime.test_grpc import fp32

BAD_SHAPE = {"id": "client-7", "inputs": [
    {"name": "input0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
]}  # fmt: skip


class Records(logging.Handler):
    """Every record of the data plane's logger, after the runtime's own context filter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    logger = logging.getLogger("modelfleet_runtime.dataplane")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def refused(records: list[logging.LogRecord]) -> list[tuple[str, str | None]]:
    return [(r.getMessage(), getattr(r, "request_id", None)) for r in records]


async def test_http_and_grpc_log_a_refusal_alike_under_the_clients_id(
    adder: InProcess, open_grpc: Open, records: list[logging.LogRecord]
) -> None:
    answer = await adder.client.post("/v2/models/adder/infer", json=BAD_SHAPE)
    assert answer.status_code == 400
    message = "input 'input0': expected shape [-1, 4], got [1, 3]"
    assert answer.json() == {"error": message}
    assert refused(records) == [(f"v2 inference request refused (400): {message}", "client-7")]

    records.clear()
    async with open_grpc("adder", {1: onnx_models.add_constant(1)}) as served:
        request = pb.ModelInferRequest(
            model_name="adder", id="client-8", inputs=[fp32("input0", [1, 2, 3], [1, 3])]
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await served.stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == message
    assert refused(records) == [(f"grpc inference request refused (400): {message}", "client-8")]


async def test_without_an_id_requests_are_numbered_by_the_server(
    adder: InProcess, records: list[logging.LogRecord]
) -> None:
    for _ in range(2):
        body = {"inputs": BAD_SHAPE["inputs"]}
        assert (await adder.client.post("/v2/models/adder/infer", json=body)).status_code == 400
    ids = [r.request_id for r in records]  # type: ignore[attr-defined]
    assert len(set(ids)) == 2 and all(isinstance(i, str) and len(i) == 16 for i in ids)


async def test_a_model_that_fails_to_run_is_a_500_logged_with_its_traceback(
    adder: InProcess, records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(_self: OnnxModel, *_args: Any) -> dict[str, np.ndarray[Any, Any]]:
        raise RuntimeError("ONNX Runtime: node Add failed")  # what a failing kernel raises

    monkeypatch.setattr(OnnxModel, "run", fail)
    body = {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32",
                        "data": [1, 2, 3, 4]}]}  # fmt: skip
    answer = await adder.client.post("/v2/models/adder/infer", json=body)
    assert answer.status_code == 500
    assert "failed to run: ONNX Runtime: node Add failed" in answer.json()["error"]
    (record,) = records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage().startswith("v2 inference request failed (500): ")
