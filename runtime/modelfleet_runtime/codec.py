"""Bytes on the wire <-> numpy arrays, for the Open Inference Protocol (JSON and the binary tensor
data extension). V1 ``:predict`` bodies are ``v1.py``'s, built on this module's parsing.

Called by ``fastpath.py`` on every HTTP inference request, so it is the hot path: orjson for
JSON, numpy for element conversion (``elements``: no Python loops over elements, every size
check done on the declared shape before anything is allocated), and a plain lane
(``_plain_request``) that decodes the common small request in one frame, leaving the general
path the rest (on the bench's MLP-small body, 5.5 µs against 8-9 µs: bench/PROFILE.md, "Round
2, second pass"). Every problem raises ``BadRequestError`` with a message naming the input.
Tensor bytes (the binary extension's raw buffers) are read and written by
``modelfleet_client.tensors``, which the client uses for the other end of the same wire.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modelfleet_client import tensors
from modelfleet_runtime import elements, jsontensors
from modelfleet_runtime.errors import BadRequestError
from modelfleet_runtime.protocol import (
    DATATYPES,
    InferRequest,
    InferResponse,
    datatype_of,
)

MAX_JSON_DEPTH = 100
"""Deepest nesting of JSON objects and arrays a request may have (orjson alone allows 1024)."""
_SCALARS = frozenset({int, float, str, bool, type(None)})


def loads(body: bytes) -> Any:
    """Parse JSON, turning any parser complaint, or nesting deeper than MAX_JSON_DEPTH, into
    a 400."""
    value = _parse(body)
    _check_depth(body, value)
    return value


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None


def _check_depth(body: bytes, value: Any) -> None:
    # Nesting needs brackets: a body with few of them (counted at C speed) cannot be too deep.
    brackets = body.count(b"[") + body.count(b"{")
    if brackets > MAX_JSON_DEPTH and _too_deep(value, MAX_JSON_DEPTH):
        raise BadRequestError(f"request body nests deeper than {MAX_JSON_DEPTH} levels")


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
    if document is None:
        document = _parse(body)
        if binary is None:
            try:
                plain = _plain_request(document, max_elements)
            except (BadRequestError, ValueError, TypeError, OverflowError):
                plain = None  # the general path answers, its checks in their order
            if plain is not None:
                return plain
        _check_depth(body, document)
    request = as_object(document, "request body")
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


_PLAIN_REQUEST = (frozenset({"inputs"}), frozenset({"inputs", "id"}))
_PLAIN_INPUT = frozenset({"name", "datatype", "shape", "data"})


def _plain_request(document: Any, max_elements: int) -> InferRequest | None:
    """The common request in one frame: only ``inputs`` (and a string ``id``), each input an
    object of exactly name, datatype, shape and a list of numbers that fits both; decoded to
    the same arrays the general path makes. None for anything else, which the general path
    then decodes, or refuses with its own message. No depth check needed: such a document is
    three levels deep plus its arrays' dimensions, which numpy caps at 64 (deeper data makes
    ``np.asarray`` fail, and the general path refuse the body)."""
    if type(document) is not dict or document.keys() not in _PLAIN_REQUEST:
        return None
    request_id = document.get("id")
    inputs = document["inputs"]
    if (request_id is not None and type(request_id) is not str) or type(inputs) is not list:
        return None
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for item in inputs:
        if type(item) is not dict or item.keys() != _PLAIN_INPUT:
            return None
        name, datatype, shape, data = item["name"], item["datatype"], item["shape"], item["data"]
        if type(name) is not str or not name or name in arrays or type(data) is not list:
            return None
        dtype = DATATYPES.get(datatype) if type(datatype) is str else None
        if dtype is None or datatype == "BYTES" or type(shape) is not list:
            return None
        count = 1
        for dim in shape:
            if type(dim) is not int or dim <= 0:
                return None
            count *= dim
        if count > max_elements:
            return None
        try:
            array = np.asarray(data)
        except (ValueError, TypeError):
            return None
        if array.size != count or array.dtype.kind not in elements.TAKES[dtype.kind]:
            return None
        arrays[name] = elements.cast_values(array, name, datatype, dtype).reshape(shape)
    return InferRequest(arrays, request_id) if arrays else None


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
    shape, count = elements.check_shape(item.get("shape"), name, max_elements)
    size = _parameters(item, name).get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise BadRequestError(f"input '{name}' has no 'data'")
        return name, elements.from_json(item["data"], name, datatype, count).reshape(shape), 0
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
