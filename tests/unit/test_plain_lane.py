"""The plain lane of ``codec.decode_infer`` (``_plain_request``: a small request of only inputs,
each exactly name, datatype, shape and numbers) decodes exactly what the general path decodes:
the same arrays bit for bit, the same id, and for anything the lane declines, the general
path's answer, error message included. The bodies are ``test_jsontensors``' generated ones
(number spellings, ragged and hidden nesting, every datatype, stray fields, repeated keys)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from modelfleet_runtime import codec, jsontensors
from modelfleet_runtime.errors import BadRequestError
from modelfleet_runtime.protocol import DATATYPES
from tests.unit.test_jsontensors import LIMIT, Raw, request, tensors


def declines(*_: Any) -> None:
    """``jsontensors.parse`` or ``codec._plain_request`` declining every body."""


def decode(body: bytes, plain: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """``decode_infer`` on the orjson path, with the plain lane or without it."""
    with monkeypatch.context() as patch:
        patch.setattr(jsontensors, "parse", declines)
        if not plain:
            patch.setattr(codec, "_plain_request", declines)
        try:
            decoded = codec.decode_infer(body, None, LIMIT)
        except BadRequestError as exc:
            return "error", str(exc)
    arrays = {
        k: (v.dtype.str, v.shape, v.tobytes() if v.dtype != object else v.tolist())
        for k, v in decoded.inputs.items()
    }
    return "ok", (arrays, decoded.id, decoded.parameters, decoded.outputs, decoded.binary_outputs)


def taken(body: bytes) -> bool:
    return codec._plain_request(orjson.loads(body), LIMIT) is not None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensors())
def test_the_plain_lane_decodes_what_the_general_path_decodes(body: bytes) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert decode(body, True, monkeypatch) == decode(body, False, monkeypatch), body[:400]


@pytest.mark.parametrize(
    ("data", "shape", "datatype"),
    [
        ([0.25, -1.5, 3, True], [1, 4], "FP32"),
        ([[0.25, -1.5], [3.0, 1e-40]], [2, 2], "FP16"),
        ([1, 2, 3], [3], "INT64"),
        ([[1, 255], [0, 7]], [4], "UINT8"),
        ([True, False], [2], "BOOL"),
        ([1.0, 2.5], [2], "FP64"),
    ],
)
def test_plain_requests_take_the_lane(data: Any, shape: list[int], datatype: str) -> None:
    body = orjson.dumps(
        {"id": "r7", "inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}
    )
    assert taken(body)
    with pytest.MonkeyPatch.context() as monkeypatch:
        plain = decode(body, True, monkeypatch)
        assert plain == decode(body, False, monkeypatch)
    decoded = codec.decode_infer(body, None, LIMIT)
    expected = np.asarray(data).astype(DATATYPES[datatype]).reshape(shape)
    assert decoded.id == "r7"
    assert decoded.inputs["x"].dtype == expected.dtype
    assert np.array_equal(decoded.inputs["x"], expected)


def declined() -> list[tuple[str, bytes]]:
    row = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.5, 2.5]}
    return [
        ("parameters", orjson.dumps({"inputs": [row], "parameters": {"a": 1}})),
        ("outputs", orjson.dumps({"inputs": [row], "outputs": [{"name": "y"}]})),
        ("input parameters", orjson.dumps({"inputs": [row | {"parameters": {}}]})),
        ("numeric id", orjson.dumps({"inputs": [row], "id": 7})),
        ("zero dimension", orjson.dumps({"inputs": [row | {"shape": [0], "data": []}]})),
        ("float dimension", orjson.dumps({"inputs": [row | {"shape": [2.0]}]})),
        ("negative dimension", orjson.dumps({"inputs": [row | {"shape": [-2]}]})),
        ("bytes", orjson.dumps({"inputs": [row | {"datatype": "BYTES", "data": ["a", "b"]}]})),
        ("unknown datatype", orjson.dumps({"inputs": [row | {"datatype": "FP8"}]})),
        ("count", orjson.dumps({"inputs": [row | {"shape": [3]}]})),
        ("strings", orjson.dumps({"inputs": [row | {"data": ["1", "2"]}]})),
        ("floats for integers", orjson.dumps({"inputs": [row | {"datatype": "INT32"}]})),
        ("ragged", orjson.dumps({"inputs": [row | {"data": [[1.5], 2.5]}]})),
        ("twice", orjson.dumps({"inputs": [row, row]})),
        ("no inputs", orjson.dumps({"inputs": []})),
        ("too large", orjson.dumps({"inputs": [row | {"shape": [LIMIT + 1]}]})),
        ("too deep", request(_deep(), [1])),
        ("a list", b"[1]"),
    ]


def _deep() -> Any:
    deep: Any = [1.5]
    for _ in range(codec.MAX_JSON_DEPTH):
        deep = [deep]
    return deep


@pytest.mark.parametrize("body", [b for _, b in declined()], ids=[n for n, _ in declined()])
def test_what_the_lane_declines_the_general_path_answers(body: bytes) -> None:
    assert not taken(body)
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert decode(body, True, monkeypatch) == decode(body, False, monkeypatch)


def test_an_overflow_is_refused_in_the_lane_as_on_the_general_path() -> None:
    body = request([Raw("1e39"), 1.5], [2])
    with pytest.MonkeyPatch.context() as monkeypatch:
        plain = decode(body, True, monkeypatch)
        assert plain == ("error", "input 'x': a value is out of range for FP32")
        assert plain == decode(body, False, monkeypatch)


def test_a_body_wrong_twice_gets_the_general_paths_first_error() -> None:
    """The lane would find the range error of the first input; the general path finds the
    depth of the second first, and its answer is the one given."""
    deep: Any = [1.5]
    for _ in range(codec.MAX_JSON_DEPTH + 50):
        deep = [deep]
    first = {"name": "a", "datatype": "UINT8", "shape": [1], "data": [300]}
    second = {"name": "b", "datatype": "FP32", "shape": [1], "data": deep}
    body = orjson.dumps({"inputs": [first, second]})
    with pytest.MonkeyPatch.context() as monkeypatch:
        plain = decode(body, True, monkeypatch)
        assert plain == ("error", f"request body nests deeper than {codec.MAX_JSON_DEPTH} levels")
        assert plain == decode(body, False, monkeypatch)


def test_an_exception_inside_the_lane_hands_the_body_to_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the lane raises (here an OverflowError, as a comparison of booleans with 2**64-1
    once did), the body gets the general path's answer, never a 500."""

    def overflows(*_: Any) -> None:
        raise OverflowError("Python int too large to convert to C long")

    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "UINT8", "data": [[7, 300]]}]}
    )
    monkeypatch.setattr(jsontensors, "parse", declines)
    monkeypatch.setattr(codec, "_plain_request", overflows)
    with pytest.raises(BadRequestError, match="out of range for UINT8"):
        codec.decode_infer(body, None, LIMIT)


@pytest.mark.parametrize("datatype", ["UINT64", "INT64", "UINT8", "INT8"])
def test_booleans_count_as_0_and_1_in_every_integer_tensor(datatype: str) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 2], "datatype": datatype, "data": [[True, False]]}]}
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        plain = decode(body, True, monkeypatch)
        assert plain == decode(body, False, monkeypatch)
    assert plain[0] == "ok"
    array = codec.decode_infer(body, None, LIMIT).inputs["x"]
    assert array.dtype == DATATYPES[datatype] and array.tolist() == [[1, 0]]


@pytest.mark.parametrize("datatype", ["UINT64", "INT32"])
def test_booleans_beside_integral_floats_count_as_0_and_1(datatype: str) -> None:
    """``[true, 2.0]`` is a float array to numpy: the exact-integer path takes true as 1 too."""
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [2], "datatype": datatype, "data": [True, 2.0]}]}
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        plain = decode(body, True, monkeypatch)
        assert plain == decode(body, False, monkeypatch)
    assert codec.decode_infer(body, None, LIMIT).inputs["x"].tolist() == [1, 2]
