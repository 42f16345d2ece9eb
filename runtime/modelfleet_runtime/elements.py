"""JSON numbers (and gRPC's typed contents) to numpy arrays of a tensor's datatype, with the
checks every protocol shares: a declared shape and its element count bounded before anything is
allocated, the kinds of numbers each datatype takes, integer ranges, float overflow (1e39 is no
FP32), integers numpy cannot infer exactly. ``codec`` (the Open Inference Protocol's JSON),
``v1`` and ``grpc_api`` build on these, so every transport refuses a value for the same reason,
with a ``BadRequestError`` naming the input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modelfleet_runtime import jsontensors
from modelfleet_runtime.errors import BadRequestError
from modelfleet_runtime.protocol import DATATYPES

_INT_RANGES = {
    k: (np.iinfo(v).min, np.iinfo(v).max) for k, v in DATATYPES.items() if v.kind in "iu"
}
TAKES = {"b": "b", "i": "biu", "u": "biu", "f": "biuf"}
"""The kinds of JSON numbers each kind of tensor takes (numpy's kinds: bool, int, uint, float;
booleans count as 0 and 1 in a number tensor)."""
_FLOAT_TOP = {np.dtype(t): float(np.finfo(t).max) for t in (np.float16, np.float32, np.float64)}


def integral(value: Any) -> bool:
    """An integer in JSON's sense: 3 or 3.0, not 3.5, not true."""
    return type(value) is int or (type(value) is float and value.is_integer())


def check_shape(raw: Any, name: str, max_elements: int) -> tuple[tuple[int, ...], int]:
    """Validate a declared shape and its element count before anything is allocated."""
    if not isinstance(raw, list) or not all(integral(d) for d in raw):
        raise BadRequestError(f"input '{name}': shape must be a list of integers, got {raw!r}")
    raw = [int(d) for d in raw]  # 2.0 is the integer 2 in JSON
    if any(d < 0 for d in raw):
        raise BadRequestError(f"input '{name}': shape {raw} has a negative dimension")
    count = math.prod(raw)
    if count > max_elements:
        raise BadRequestError(
            f"input '{name}': shape {raw} holds {count} elements, more than the body limit allows"
        )
    # A zero dimension makes the count 0, but numpy still refuses a shape whose other
    # dimensions multiply past its index range: bound those too.
    if math.prod(d for d in raw if d) > max_elements:
        raise BadRequestError(
            f"input '{name}': shape {raw} has dimensions larger than the body limit allows"
        )
    return tuple(raw), count


def from_json(data: Any, name: str, datatype: str, count: int) -> np.ndarray[Any, Any]:
    """Convert JSON data (flat or nested lists) to a flat array of ``datatype``."""
    if isinstance(data, jsontensors.Numbers):  # already an array: a large body's fast lane
        return _counted(cast_values(data.array, name, datatype, DATATYPES[datatype]), name, count)
    if not isinstance(data, list):
        raise BadRequestError(f"input '{name}': data must be a list")
    dtype = DATATYPES[datatype]
    try:
        if datatype == "BYTES":
            array = np.array(data, dtype=object).reshape(-1)
            if not all(isinstance(v, str) for v in array):
                raise BadRequestError(f"input '{name}': BYTES data must be strings")
        else:
            array = np.asarray(data).reshape(-1)
            if dtype.kind in "iu" and array.dtype.kind in "fO":
                array = exact_integers(data, name, datatype, dtype)
            elif dtype.kind == "f" and array.dtype.kind == "O":
                array = wide_numbers(data, name, datatype)
            array = cast_values(array, name, datatype, dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequestError(f"input '{name}': data does not fit {datatype}: {exc}") from None
    return _counted(array, name, count)


def _counted(array: np.ndarray[Any, Any], name: str, count: int) -> np.ndarray[Any, Any]:
    if array.size != count:
        raise BadRequestError(
            f"input '{name}': shape holds {count} elements but data has {array.size}"
        )
    return array


def exact_integers(
    data: list[Any], name: str, datatype: str, dtype: np.dtype[Any]
) -> np.ndarray[Any, Any]:
    """Integers numpy could not infer exactly (UINT64's upper half arrives as float64)."""
    values = np.array(data, dtype=object).reshape(-1)
    if not all(integral(v) or type(v) is bool for v in values):  # true is 1, as elsewhere
        raise BadRequestError(f"input '{name}': {datatype} data cannot hold numbers")
    return np.array([int(v) for v in values.tolist()], dtype=dtype)


def wide_numbers(data: Any, name: str, datatype: str) -> np.ndarray[Any, Any]:
    """Numbers for a float input that numpy kept as objects: integers past 64 bits (1e30
    written out in digits is the same number as 1e30, which a float input takes)."""
    values = np.array(data, dtype=object).reshape(-1)
    if not all(type(v) is int or type(v) is float for v in values):
        raise BadRequestError(f"input '{name}': {datatype} data must be numbers")
    return values.astype(np.float64)


def cast_values(
    array: np.ndarray[Any, Any], name: str, datatype: str, dtype: np.dtype[Any]
) -> np.ndarray[Any, Any]:
    kind = array.dtype.kind
    if array.size == 0:
        return array.astype(dtype)
    # numpy makes [true, 2.5] numbers anyway.
    if kind not in TAKES[dtype.kind]:
        got = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers"}.get(kind, kind)
        raise BadRequestError(f"input '{name}': {datatype} data cannot hold {got}")
    if datatype in _INT_RANGES and kind != "b":  # 0 and 1 fit every integer type
        low, high = _INT_RANGES[datatype]
        if array.min() < low or array.max() > high:
            raise BadRequestError(f"input '{name}': a value is out of range for {datatype}")
    if dtype.kind != "f" or array.dtype == dtype:
        return array.astype(dtype, copy=False)  # integer ranges checked above: nothing to lose
    # Only a value past the target's largest can overflow: two reductions prove none is, where
    # np.errstate costs more (5% of a batched MLP-wide request's CPU, py-spy); NaN and
    # infinities fail the test and take the checked cast.
    top = _FLOAT_TOP[dtype]
    if -top <= array.min() and array.max() <= top:
        return array.astype(dtype)
    try:
        with np.errstate(over="raise"):  # 1e39 as FP32 is an error, not a silent inf
            return array.astype(dtype)
    except FloatingPointError:
        raise BadRequestError(f"input '{name}': a value is out of range for {datatype}") from None
