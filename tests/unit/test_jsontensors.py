"""The simdjson fast lane for large JSON requests (``modelfleet_runtime.jsontensors``) decodes
exactly what the orjson path decodes: the same arrays bit for bit, the same dtype and shape,
the same request fields, and the same error for a bad body. Bodies are written as text, so
that number spellings (``-0``, ``1E5``, ``5e-324``, integers past 2**53 and past 64 bits),
duplicate keys, escapes and ragged or hidden nesting reach both parsers as a client would send
them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet_runtime import codec, jsontensors
from modelfleet_runtime.errors import BadRequestError
from modelfleet_runtime.protocol import DATATYPES

LIMIT = 10**6


class Raw(str):
    """JSON text written as is (a number's spelling, or a hand-made fragment)."""


class Pairs(list[tuple[str, Any]]):
    """A JSON object as key/value pairs, so that a key may repeat."""


def text(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{orjson.dumps(k).decode()}:{text(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(text(v) for v in value) + "]"
    return orjson.dumps(value).decode()


@pytest.fixture(autouse=True)
def every_body_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lane normally starts at 64 KiB; here small generated bodies take it too."""
    monkeypatch.setattr(jsontensors, "MIN_BODY", 0)


def orjson_only(body: bytes, max_depth: int) -> None:
    """``jsontensors.parse`` declining every body: the orjson path alone."""
    del body, max_depth


def decode(body: bytes, fast: bool) -> tuple[str, Any]:
    parse = jsontensors.parse
    try:
        if not fast:
            jsontensors.parse = orjson_only
        request = codec.decode_infer(body, None, LIMIT)
    except BadRequestError as exc:
        return "error", str(exc)
    finally:
        jsontensors.parse = parse
    arrays = {
        k: (v.dtype.str, v.shape, v.tobytes() if v.dtype != object else v.tolist())
        for k, v in request.inputs.items()
    }
    return "ok", (arrays, request.id, request.parameters, request.outputs, request.binary_outputs)


def assert_same(body: bytes) -> None:
    assert decode(body, fast=True) == decode(body, fast=False), body[:400]


def request(data: Any, shape: Any, datatype: Any = "FP32", **more: Any) -> bytes:
    row = Pairs([("name", "x"), ("shape", shape), ("datatype", datatype), ("data", data)])
    return text(Pairs([("inputs", [row]), *more.items()])).encode()


numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Raw(repr(f))),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(lambda f: Raw(repr(f))),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda i: Raw(str(i))),
    st.integers(min_value=-(2**60), max_value=2**60).map(lambda i: Raw(str(i))),
    st.sampled_from(["-0", "-0.0", "0", "1E5", "1e-400", "5e-324", "1e39", "1e400", "2.5e+3"]).map(
        Raw
    ),
    st.sampled_from([True, False, None, "7", "[1]"]),
)


def nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


@st.composite
def tensors(draw: st.DrawFn) -> bytes:
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=4)))
    count = int(np.prod(shape))
    uniform = draw(st.sampled_from([numbers, numbers.filter(lambda n: isinstance(n, Raw))]))
    flat = draw(st.lists(uniform, min_size=count, max_size=count))
    data = nest(flat, shape) if draw(st.booleans()) else flat
    if draw(st.integers(0, 5)) == 0 and isinstance(data, list) and data:  # ragged or hidden
        data = draw(st.sampled_from([[data], data[1:], [*data[:-1], [data[-1]]]]))
    declared = list(shape) if draw(st.integers(0, 6)) else draw(st.lists(st.integers(-1, 6)))
    datatype = draw(st.sampled_from([*DATATYPES, "FP8"]))
    more: dict[str, Any] = {}
    if draw(st.booleans()):
        more["parameters"] = Pairs([("tag", draw(st.sampled_from(["a", "[b]", "é", "\\u00e9"])))])
    if draw(st.booleans()):
        more["id"] = draw(st.sampled_from(["r1", 7, Raw('"r\\u0031"')]))
    body = request(data, declared, datatype, **more)
    if draw(st.integers(0, 8)) == 0:  # a key twice: orjson keeps the last
        body = body.replace(b'"datatype":', b'"datatype":"INT8","datatype":', 1)
    return body


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensors())
def test_fast_lane_decodes_what_orjson_decodes(body: bytes) -> None:
    assert_same(body)


def lane(body: bytes) -> bool:
    return jsontensors.parse(body, codec.MAX_JSON_DEPTH) is not None


def image(seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal((1, 3, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64", "INT32", "UINT8"])
def test_tensors_take_the_lane(nested: bool, datatype: str) -> None:
    values = image(1)
    if datatype.startswith(("INT", "UINT")):
        values = np.abs(values * 50).astype(np.int64)
    data = values.tolist() if nested else values.reshape(-1).tolist()
    body = orjson.dumps(
        {
            "id": "r",
            "inputs": [{"name": "x", "shape": [1, 3, 8, 8], "datatype": datatype, "data": data}],
            "parameters": {"p": [1, 2]},
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    )
    assert lane(body)
    assert_same(body)
    decoded = codec.decode_infer(body, None, LIMIT)
    expected = values.astype(DATATYPES[datatype])
    assert decoded.inputs["x"].dtype == expected.dtype
    assert np.array_equal(decoded.inputs["x"], expected)


def test_a_large_body_takes_the_lane_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    values = np.random.default_rng(2).standard_normal(16384).astype(np.float32)
    small = request(values[:16].tolist(), [16])
    large = request(values.tolist(), [values.size])
    assert len(small) < jsontensors.MIN_BODY <= len(large)
    assert not lane(small)
    assert lane(large)
    assert np.array_equal(codec.decode_infer(large, None, LIMIT).inputs["x"], values)


def orjson_path_cases() -> Iterator[tuple[str, bytes]]:
    yield "ragged", request([[1.5, 2.5], [3.5]], [3])
    yield "array among numbers", request([[1.5, 2.5], [3.5, [4.5]]], [4])
    yield "flat with an array", request([1.5, [2.5]], [2])
    yield "a string", request([1.5, "2.5"], [2])
    yield "booleans", request([True, False], [2], "BOOL")
    yield "bytes", request(["a", "b"], [2], "BYTES")
    yield "a boolean among numbers", request([True, 2.5], [2])
    yield "float for an integer", request([1, 2.0], [2], "INT32")
    yield "past int64", request([Raw(str(2**63)), 1], [2], "UINT64")
    # int64 -> float32 rounds up; through a double first it rounds down (a tie by then)
    yield "integers past 2**53", request([Raw(str(2**54 + 2**30 + 1)), 1], [2], "FP32")
    yield "escape", request([1.5], [1], id=Raw('"\\u0041"'))
    yield "bracket in a string", request([1.5], [1], id="[")
    yield "duplicate key", request([1.5], [1]).replace(b'"name":"x"', b'"name":"x","name":"z"')
    yield "not JSON", request([1.5], [1])[:-1]
    yield "infinity", request([Raw("1e400")], [1])
    deep: Any = [1.5]
    for _ in range(codec.MAX_JSON_DEPTH):
        deep = [deep]
    yield "too deep", request(deep, [1])


@pytest.mark.parametrize(
    "body", [b for _, b in orjson_path_cases()], ids=[n for n, _ in orjson_path_cases()]
)
def test_what_the_lane_cannot_prove_goes_the_orjson_way(body: bytes) -> None:
    assert not lane(body)
    assert_same(body)


def test_integral_floats_past_two_to_53_still_take_the_lane_when_not_all_integral() -> None:
    body = request([Raw("1e300"), 0.5], [2], "FP64")
    assert lane(body)
    assert_same(body)


def test_a_document_still_alive_does_not_stop_the_lane() -> None:
    """The thread's parser is reused; a document of an earlier body kept alive somewhere makes
    simdjson refuse the reuse, and the lane takes a new parser rather than the orjson path."""
    held = jsontensors._parse(request([1.5], [1]))
    body = request(image(3).reshape(-1).tolist(), [192])
    assert lane(body)
    assert_same(body)
    assert held["inputs"][0]["data"][0] == 1.5
