"""Bytes on the wire <-> numpy arrays, for the Open Inference Protocol (JSON and the binary tensor
data extension). V1 ``:predict`` bodies are ``v1.py``'s, built on this module's parsing and casts.

Called by ``fastpath.py`` on every HTTP inference request (and by ``grpc_api.py`` for its shape
checks and casts), so it is the hot path: orjson for JSON, numpy for element conversion (no Python
loops over elements), and every size check done on the declared shape before anything is allocated.
Every problem raises ``BadRequestError`` with a message naming the input. Tensor bytes (the binary
extension's raw buffers) are read and written by ``modelfleet_client.tensors``, which the client
uses for the other end of the same wire.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from modelfleet_client import tensors
from modelfleet_runtime import jsontensors
from modelfleet_runtime.errors import BadRequestError
from modelfleet_runtime.protocol import (
    DATATYPES,
    InferRequest,
    InferResponse,
    datatype_of,
)

_INT_RANGES = {
    k: (np.iinfo(v).min, np.iinfo(v).max) for k, v in DATATYPES.items() if v.kind in "iu"
}


MAX_JSON_DEPTH = 100
"""Deepest nesting of JSON objects and arrays a request may have (orjson alone allows 1024)."""
_SCALARS = frozenset({int, float, str, bool, type(None)})


def loads(body: bytes) -> Any:
    """Parse JSON, turning any parser complaint, or nesting deeper than MAX_JSON_DEPTH, into
    a 400."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None
    # Nesting needs brackets: a body with few of them (counted at C speed) cannot be too deep.
    brackets = body.count(b"[") + body.count(b"{")
    if brackets > MAX_JSON_DEPTH and _too_deep(value, MAX_JSON_DEPTH):
        raise BadRequestError(f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _too_deep(value: Any, limit: int) -> bool:
    """Iterative (no recursion limit); a list of scalars (tensor data) is one C-level scan."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        if _SCALARS.issuperset(map(type, children)):
            continue
        stack += [(c, depth + 1) for c in children if isinstance(c, dict | list)]
    return False


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _integral(value: Any) -> bool:
    """An integer in JSON's sense: 3 or 3.0, not 3.5, not true."""
    return type(value) is int or (type(value) is float and value.is_integer())


def check_shape(raw: Any, name: str, max_elements: int) -> tuple[tuple[int, ...], int]:
    """Validate a declared shape and its element count before anything is allocated."""
    if not isinstance(raw, list) or not all(_integral(d) for d in raw):
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


def _from_json(data: Any, name: str, datatype: str, count: int) -> np.ndarray[Any, Any]:
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
    if not all(_integral(v) for v in values):
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
    # Booleans count as 0 and 1 in a number tensor: numpy makes [true, 2.5] numbers anyway.
    allowed = {"b": "b", "i": "biu", "u": "biu", "f": "biuf"}[dtype.kind]
    if kind not in allowed:
        got = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers"}.get(kind, kind)
        raise BadRequestError(f"input '{name}': {datatype} data cannot hold {got}")
    if datatype in _INT_RANGES:
        low, high = _INT_RANGES[datatype]
        if array.min() < low or array.max() > high:
            raise BadRequestError(f"input '{name}': a value is out of range for {datatype}")
    try:
        with np.errstate(over="raise"):  # 1e39 as FP32 is an error, not a silent inf
            return array.astype(dtype, copy=False)
    except FloatingPointError:
        raise BadRequestError(f"input '{name}': a value is out of range for {datatype}") from None


def from_binary(chunk: memoryview, name: str, datatype: str, count: int) -> np.ndarray[Any, Any]:
    """A flat input array from raw bytes (``tensors.from_bytes``); BYTES become ``str``."""
    try:
        array = tensors.from_bytes(chunk, datatype, count)
    except ValueError as exc:
        raise BadRequestError(f"input '{name}': {exc}") from None
    if datatype == "BYTES":  # models get str, as from JSON requests
        return np.array([v.decode("utf-8", "replace") for v in array], dtype=object)
    return array


def decode_infer(body: bytes, header_length: str | None, max_elements: int) -> InferRequest:
    """Decode an Open Inference Protocol request (JSON, or JSON + binary tensors)."""
    binary: memoryview | None = None  # a JSON body: no binary_data_size allowed
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise BadRequestError("Inference-Header-Content-Length must be an integer") from None
        if not 0 < split <= len(body):
            raise BadRequestError(
                f"Inference-Header-Content-Length {split} is outside the body's {len(body)} bytes"
            )
        binary = memoryview(body)[split:]
        body = body[:split]
    document = jsontensors.parse(body, MAX_JSON_DEPTH)
    request = as_object(loads(body) if document is None else document, "request body")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequestError("request must have a non-empty 'inputs' list")
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    offset = 0
    for index, raw in enumerate(inputs):
        rest = None if binary is None else binary[offset:]
        name, array, used = _decode_input(raw, index, rest, max_elements)
        if name in arrays:
            raise BadRequestError(f"input '{name}' appears more than once")
        arrays[name] = array
        offset += used
    if binary is not None and offset != len(binary):
        raise BadRequestError(f"{len(binary) - offset} bytes of binary data belong to no input")
    return _request(request, arrays)


def _decode_input(
    raw: Any, index: int, binary: memoryview | None, max_elements: int
) -> tuple[str, np.ndarray[Any, Any], int]:
    item = as_object(raw, f"inputs[{index}]")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequestError(f"inputs[{index}] needs a 'name' string")
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:  # a list is unhashable
        raise BadRequestError(f"input '{name}': unknown datatype {datatype!r}")
    shape, count = check_shape(item.get("shape"), name, max_elements)
    size = _parameters(item, name).get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise BadRequestError(f"input '{name}' has no 'data'")
        return name, _from_json(item["data"], name, datatype, count).reshape(shape), 0
    if binary is None:
        raise BadRequestError(
            f"input '{name}': binary_data_size needs binary data after the JSON "
            "(the Inference-Header-Content-Length header)"
        )
    if type(size) is not int or not 0 <= size <= len(binary):
        raise BadRequestError(f"input '{name}': binary_data_size {size!r} exceeds the body")
    array = from_binary(binary[:size], name, datatype, count)
    return name, array.reshape(shape), size


def _parameters(item: dict[str, Any], what: str) -> dict[str, Any]:
    params = item.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequestError(f"'{what}': parameters must be an object")
    return params


ALL_OUTPUTS = "*"
"""In ``InferRequest.binary_outputs``: every output goes out as binary data."""


def _request(request: dict[str, Any], arrays: dict[str, np.ndarray[Any, Any]]) -> InferRequest:
    parameters = _parameters(request, "request")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError("request 'id' must be a string")
    binary_all = parameters.get("binary_data_output") is True
    outputs = request.get("outputs")
    if outputs is None:
        binary = frozenset({ALL_OUTPUTS}) if binary_all else frozenset()
        return InferRequest(arrays, request_id, parameters, None, binary)
    if not isinstance(outputs, list):
        raise BadRequestError("'outputs' must be a list")
    names: list[str] = []
    binary_names: set[str] = set()
    for index, raw in enumerate(outputs):
        out = as_object(raw, f"outputs[{index}]")
        name = out.get("name")
        if not isinstance(name, str):
            raise BadRequestError(f"outputs[{index}] needs a 'name' string")
        names.append(name)
        if _parameters(out, name).get("binary_data", binary_all) is True:
            binary_names.add(name)
    return InferRequest(arrays, request_id, parameters, names, frozenset(binary_names))


def encode_infer(response: InferResponse, binary_outputs: frozenset[str]) -> tuple[bytes, int]:
    """The response body, and the JSON header's length when binary tensors follow (else 0)."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in response.outputs.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in binary_outputs or ALL_OUTPUTS in binary_outputs:
            raw = tensors.to_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _to_json_data(array, datatype)
        outputs.append(entry)
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id is not None:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, 0
    return b"".join([header, *chunks]), len(header)


def _to_json_data(array: np.ndarray[Any, Any], datatype: str) -> Any:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    return np.ascontiguousarray(flat)


def dumps(value: Any) -> bytes:
    """JSON for non-tensor answers (metadata, V1 predictions)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
