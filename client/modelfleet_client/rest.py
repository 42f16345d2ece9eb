"""The Open Inference Protocol over HTTP/REST (``http://`` and ``https://`` URLs).

``RestCalls`` builds requests and reads answers (``Answer``), for both HTTP transports:
``http_blocking`` (the blocking client's) and ``http_async`` (the async client's).

Tensors travel in the binary tensor data extension by default: a JSON header of
``Inference-Header-Content-Length`` bytes, then each input's raw bytes in order (views of the
arrays' memory where they are C-ordered: no copy), and every output asked back the same way.
No per-element JSON either way, which is what makes large tensors cheap. ``binary=False``
sends and asks for plain JSON instead, for servers without the extension (MLServer 1.7);
answers are read in whichever form they come. The JSON here is the standard library's: with
binary tensors it only carries a small header, and the client's only dependency stays numpy.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import numpy as np

from modelfleet_client import tensors
from modelfleet_client.calls import Arrays, Call
from modelfleet_client.errors import InferenceServerError

HEADER_LENGTH = "inference-header-content-length"
Body = list[bytes | memoryview]
Request = tuple[str, str, Body, dict[str, str]]
"""Method, path (after the base URL), body (its parts, in order), headers."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, whichever transport read it; header names in lower case."""

    status: int
    reason: str
    headers: Mapping[str, str]
    content: bytes


class RestCalls:
    """Requests of the Open Inference Protocol's REST binding."""

    def __init__(self, binary: bool = True) -> None:
        self.binary = binary

    def infer(
        self,
        model: str,
        version: str | None,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str] | None,
    ) -> Call[Arrays]:
        path = f"{_model_path(model, version)}/infer"
        body, headers = encode_infer(inputs, outputs, self.binary)
        return Call(("POST", path, body, headers), decode_infer)

    def ready(self, model: str | None, version: str | None) -> Call[bool]:
        path = "/v2/health/ready" if model is None else f"{_model_path(model, version)}/ready"
        return Call(("GET", path, [], {}), _ready)

    def metadata(self, model: str, version: str | None) -> Call[dict[str, Any]]:
        path = _model_path(model, version)
        return Call(("GET", path, [], {}), _json_object)

    def server_metadata(self) -> Call[dict[str, Any]]:
        return Call(("GET", "/v2", [], {}), _json_object)

    def models(self) -> Call[list[dict[str, Any]]]:
        path = "/v2/repository/index"
        headers = {"content-type": "application/json"}
        return Call(("POST", path, [b"{}"], headers), _json_list)


def _model_path(model: str, version: str | None) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return path if version is None else f"{path}/versions/{quote(version, safe='')}"


# --- encoding requests ---------------------------------------------------------------------


def encode_infer(
    inputs: Mapping[str, np.ndarray[Any, Any]], outputs: Sequence[str] | None, binary: bool
) -> tuple[Body, dict[str, str]]:
    """The body (its parts) and headers of an inference request."""
    entries: list[dict[str, Any]] = []
    chunks: Body = []
    for name, array in inputs.items():
        datatype = tensors.datatype_of(array)
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            raw = tensors.as_buffer(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(name, array, datatype)
        entries.append(entry)
    request: dict[str, Any] = {"inputs": entries}
    if outputs is not None:
        wanted = {"binary_data": True} if binary else {}
        request["outputs"] = [{"name": n, "parameters": wanted} for n in outputs]
    elif binary:
        request["parameters"] = {"binary_data_output": True}
    try:
        header = json.dumps(request, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise InferenceServerError(
            400, "JSON cannot carry NaN or infinity: send with binary=True"
        ) from None
    if not binary:
        return [header], {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return [header, *chunks], headers


def _json_data(name: str, array: np.ndarray[Any, Any], datatype: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype != "BYTES":
        values: list[Any] = flat.tolist()
        return values
    try:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
    except UnicodeDecodeError:
        raise InferenceServerError(
            400, f"input '{name}': BYTES that are not UTF-8 need binary=True"
        ) from None


# --- decoding answers ----------------------------------------------------------------------


def check(answer: Answer) -> None:
    """Raise the server's error when ``answer`` is not a success."""
    if not 200 <= answer.status < 300:
        raise error_of(answer)


def error_of(answer: Answer) -> InferenceServerError:
    """The error an error answer carries: ``{"error": "..."}`` (the protocol's), FastAPI's
    ``{"detail": ...}``, else the body's text."""
    message = answer.content.decode("utf-8", "replace").strip()[:2000]
    try:
        body = json.loads(answer.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        found = body.get("error", body.get("detail"))
        if found is not None:
            message = found if isinstance(found, str) else json.dumps(found)
    retry_after = parse_retry_after(answer.headers.get("retry-after"))
    return InferenceServerError(answer.status, message or answer.reason, retry_after=retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date (None if neither)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def malformed(detail: str) -> InferenceServerError:
    return InferenceServerError(502, f"the server's answer is not the protocol's: {detail}")


def _json(answer: Answer) -> Any:
    check(answer)
    try:
        return json.loads(answer.content)
    except ValueError as exc:
        raise malformed(f"invalid JSON ({exc})") from None


def _json_object(answer: Answer) -> dict[str, Any]:
    body = _json(answer)
    if not isinstance(body, dict):
        raise malformed(f"expected a JSON object, got {type(body).__name__}")
    return body


def _json_list(answer: Answer) -> list[dict[str, Any]]:
    body = _json(answer)
    if not isinstance(body, list):
        raise malformed(f"expected a JSON list, got {type(body).__name__}")
    return body


def _ready(answer: Answer) -> bool:
    check(answer)
    return True


def decode_infer(answer: Answer) -> Arrays:
    """The outputs of an inference answer, binary or JSON. Binary outputs are read-only
    views of the answer's bytes (no copy)."""
    check(answer)
    content = answer.content
    split = answer.headers.get(HEADER_LENGTH)
    binary = memoryview(b"")
    if split is not None:
        if not split.isdigit() or int(split) > len(content):
            raise malformed(f"{HEADER_LENGTH} {split!r} for a body of {len(content)} bytes")
        binary = memoryview(content)[int(split) :]
        content = content[: int(split)]
    try:
        body = json.loads(content)
        found, offset = {}, 0
        for entry in body["outputs"]:
            name, array, used = _decode_output(entry, binary[offset:])
            found[name] = array
            offset += used
    except (ValueError, KeyError, TypeError) as exc:
        raise malformed(f"{type(exc).__name__}: {exc}") from None
    return found


def _decode_output(entry: dict[str, Any], binary: memoryview) -> tuple[str, Any, int]:
    name, datatype, shape = entry["name"], entry["datatype"], tuple(entry["shape"])
    if datatype not in tensors.DATATYPES:
        raise ValueError(f"output '{name}' has unknown datatype {datatype!r}")
    size = (entry.get("parameters") or {}).get("binary_data_size")
    if size is None:
        return name, from_json(entry["data"], datatype, shape), 0
    if not isinstance(size, int) or not 0 <= size <= len(binary):
        raise ValueError(f"output '{name}': binary_data_size {size!r} exceeds the body")
    array = tensors.from_bytes(binary[:size], datatype, math.prod(shape))
    return name, array.reshape(shape), size


def from_json(data: Any, datatype: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """An output's JSON ``data`` (flat or nested) as an array; BYTES as ``bytes`` elements."""
    if datatype == "BYTES":
        flat = np.array(data, dtype=object).reshape(-1)
        values = [v.encode() if isinstance(v, str) else bytes(v) for v in flat]
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    return np.array(data, dtype=tensors.DATATYPES[datatype]).reshape(shape)
