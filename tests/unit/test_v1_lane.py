"""V1 ``:predict``'s lane for large bodies (``jsontensors.parse_columns``, taken by
``v1.decode`` for a model of one number input) decodes exactly what the general path decodes:
the same array bit for bit and the same row flag, and for anything the lane declines or a check
refuses, the general path's answer, error message included."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from modelfleet_runtime import jsontensors, v1
from modelfleet_runtime.errors import BadRequestError
from modelfleet_runtime.protocol import TensorSpec


def declines(*_: Any) -> None:
    """``jsontensors.parse_columns`` declining every body."""


def general_path(*_: Any) -> None:
    raise AssertionError("the body went the general path")


def decode(body: bytes, datatype: str, lane: bool, only: bool = False) -> tuple[str, Any]:
    """``v1.decode``'s answer with the lane or without it; ``only``: failing if the body
    reaches the general path's parse."""
    specs = {"x": TensorSpec("x", datatype, (None,))}
    with pytest.MonkeyPatch.context() as patch:
        if not lane:
            patch.setattr(jsontensors, "parse_columns", declines)
        if only:
            patch.setattr(v1, "loads", general_path)
        try:
            arrays, rows = v1.decode(body, specs)
        except BadRequestError as exc:
            return "error", str(exc)
    array = arrays["x"]
    values = array.tolist() if array.dtype == object else array.tobytes()
    return "ok", (array.dtype.str, array.shape, values, rows)


def same(body: bytes, datatype: str) -> tuple[str, Any]:
    with_lane = decode(body, datatype, lane=True)
    assert with_lane == decode(body, datatype, lane=False)
    return with_lane


def taken(body: bytes, datatype: str) -> bool:
    return jsontensors.parse_columns(body, datatype, 100) is not None


rng = np.random.default_rng(7)
IMAGE = rng.standard_normal((2, 3, 48, 48))  # 13,824 numbers: a body of about 300 KB
INTEGERS = rng.integers(-100, 100, (4, 8000))


@pytest.mark.parametrize("key", ["instances", "inputs"])
@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("FP32", IMAGE.tolist()),
        ("FP64", IMAGE.tolist()),
        ("FP16", IMAGE.tolist()),
        ("FP32", INTEGERS.tolist()),  # integers for a float input
        ("INT64", INTEGERS.tolist()),
        ("INT8", INTEGERS.tolist()),
        ("INT32", INTEGERS.ravel().tolist()),  # flat
    ],
)
def test_the_lane_decodes_what_the_general_path_decodes(key: str, datatype: str, data: Any) -> None:
    body = orjson.dumps({key: data})
    assert taken(body, datatype)
    outcome = decode(body, datatype, lane=True, only=True)
    assert outcome == decode(body, datatype, lane=False)
    assert outcome[0] == "ok" and outcome[1][3] == (key == "instances")


def with_value(index: tuple[int, ...], value: Any, data: Any = None) -> Any:
    nested = IMAGE.tolist() if data is None else data
    inner = nested
    for i in index[:-1]:
        inner = inner[i]
    inner[index[-1]] = value
    return nested


DECLINED_OR_REFUSED = {
    "a value past FP32's range": ("FP32", {"instances": with_value((0, 0, 0, 0), 1e39)}),
    "past the lane's exact integers": ("FP64", {"instances": with_value((0, 0, 0, 0), 2**60)}),
    "out of INT8's range": ("INT8", {"instances": with_value((0, 0), 300, INTEGERS.tolist())}),
    "a float for an integer input": (
        "INT64",
        {"instances": with_value((0, 0), 2.5, INTEGERS.tolist())},
    ),
    "an integral float for an integer input": (
        "INT64",
        {"instances": with_value((0, 0), 2.0, INTEGERS.tolist())},
    ),
    "a boolean": ("FP32", {"instances": with_value((0, 0, 0, 0), True)}),
    "a string": ("FP32", {"instances": with_value((0, 0, 0, 0), "1.5")}),
    "a null": ("FP32", {"instances": with_value((0, 0, 0, 0), None)}),
    "a ragged row": ("FP32", {"instances": [*IMAGE[0].tolist(), [1.0]]}),
    "a row object": ("FP32", {"instances": [{"x": IMAGE[0].tolist()}]}),
    "both keys": ("FP32", {"instances": IMAGE.tolist(), "inputs": IMAGE.tolist()}),
    "another key": ("FP32", {"instances": IMAGE.tolist(), "signature_name": "serving_default"}),
    "BOOL": ("BOOL", {"instances": (IMAGE > 0).tolist()}),
    "BYTES": ("BYTES", {"instances": [str(v) for v in IMAGE.ravel()[:8000]]}),
    "UINT64 past INT64": (
        "UINT64",
        {"instances": with_value((0, 0), 2**64 - 1, INTEGERS.clip(0).tolist())},
    ),
    "an empty row": ("FP32", {"instances": [[] for _ in range(25000)]}),
}


@pytest.mark.parametrize("case", sorted(DECLINED_OR_REFUSED))
def test_what_the_lane_cannot_prove_gets_the_general_paths_answer(case: str) -> None:
    datatype, document = DECLINED_OR_REFUSED[case]
    body = orjson.dumps(document)
    assert len(body) >= jsontensors.MIN_BODY
    same(body, datatype)


def test_a_backslash_or_a_deep_nesting_goes_the_general_way() -> None:
    escaped = orjson.dumps({"instances": IMAGE.tolist(), "note": "a\\nb"})
    assert not taken(escaped, "FP32")
    same(escaped, "FP32")
    deep: Any = IMAGE.ravel().tolist()
    for _ in range(120):
        deep = [deep]
    body = orjson.dumps({"instances": deep})
    assert not taken(body, "FP32")
    assert same(body, "FP32")[0] == "error"
