"""V1 (TensorFlow Serving style) ``:predict`` and model status over the real app."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import onnx_models
from tests.helpers.runtime import InProcess
from tests.integration.runtime.conftest import OpenClient


async def test_instances_give_predictions_row_by_row(adder: InProcess) -> None:
    answer = await adder.client.post(
        "/v1/models/adder:predict", json={"instances": [[1, 2, 3, 4], [0, 0, 0, 0]]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [[3, 4, 5, 6], [2, 2, 2, 2]]}


async def test_inputs_give_outputs_column_wise(adder: InProcess) -> None:
    answer = await adder.client.post("/v1/models/adder:predict", json={"inputs": [[1, 1, 1, 1]]})
    assert answer.json() == {"outputs": [[3, 3, 3, 3]]}


async def test_several_inputs_and_outputs_by_name(open_client: OpenClient) -> None:
    async with open_client("pair", {1: onnx_models.two_in_two_out()}) as served:
        rows = [{"a": [5, 5, 5, 5], "b": [1, 2, 3, 4]}]
        answer = await served.client.post("/v1/models/pair:predict", json={"instances": rows})
        assert answer.json() == {"predictions": [{"sum": [6, 7, 8, 9], "diff": [4, 3, 2, 1]}]}
        columns = {"a": [[1, 1, 1, 1]], "b": [[1, 1, 1, 1]]}
        answer = await served.client.post("/v1/models/pair:predict", json={"inputs": columns})
        assert answer.json() == {"outputs": {"sum": [[2, 2, 2, 2]], "diff": [[0, 0, 0, 0]]}}


async def test_model_status(adder: InProcess) -> None:
    assert (await adder.client.get("/v1/models/adder")).json() == {"name": "adder", "ready": True}
    assert (await adder.client.get("/v1/models/nope")).status_code == 404


V1_BAD: list[tuple[Any, int, str]] = [
    ({}, 400, "exactly one of 'instances' or 'inputs'"),
    ({"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}, 400, "exactly one of"),
    ({"instances": []}, 400, "non-empty list"),
    ({"instances": [[1, 2, 3]]}, 400, "expected shape [-1, 4], got [1, 3]"),
    ({"instances": [[1, 2, 3, 4], [1, 2]]}, 400, "input 'input0'"),
    ({"instances": [["a", "b", "c", "d"]]}, 400, "cannot hold"),
    ({"inputs": {"other": [[1, 2, 3, 4]]}}, 400, "unexpected input 'other'"),
    ([1, 2], 400, "must be a JSON object"),
]


@pytest.mark.parametrize(("body", "status", "message"), V1_BAD)
async def test_bad_predict_requests(adder: InProcess, body: Any, status: int, message: str) -> None:
    answer = await adder.client.post("/v1/models/adder:predict", json=body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


async def test_unknown_model(adder: InProcess) -> None:
    answer = await adder.client.post("/v1/models/nope:predict", json={"instances": [[1, 2, 3, 4]]})
    assert (answer.status_code, answer.json()) == (404, {"error": "model 'nope' not found"})
