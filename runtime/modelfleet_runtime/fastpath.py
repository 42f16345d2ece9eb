"""The two inference routes, served straight from ASGI in front of the FastAPI app.

``POST /v2/models/{m}[/versions/{v}]/infer`` and ``POST /v1/models/{m}:predict`` are the only
routes on the hot path. Profiling (bench/PROFILE.md) showed about half of the event loop's CPU
per small request going to FastAPI's layers around them (middleware stack, routing, path
parameter validation, Request/Response objects), so ``FastPath`` serves them directly: read
the body (bounded), decode with ``codec``, encode, inside ``DataPlane.handle`` (admission,
lookup, request id, trace context, errors, metrics: the envelope every transport shares).
Everything else
(health, metadata, /metrics, /docs, lifespan) goes on to the FastAPI app, whose OpenAPI
document describes these two routes too (``openapi.py``). Errors leave as ``{"error": "..."}``
exactly as ``http_errors.py`` writes them for the other routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelfleet_runtime import codec, v1
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.errors import BadRequestError, PayloadTooLargeError
from modelfleet_runtime.models.onnx import OnnxModel

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

V2_PREFIX, V2_SUFFIX = "/v2/models/", "/infer"
V1_PREFIX, V1_SUFFIX = "/v1/models/", ":predict"
JSON: Headers = [(b"content-type", b"application/json")]


def match(path: str) -> tuple[str, str, str | None] | None:
    """``(protocol, model, version)`` for an inference path, else None."""
    if path.startswith(V2_PREFIX) and path.endswith(V2_SUFFIX):
        parts = path[len(V2_PREFIX) : -len(V2_SUFFIX)].split("/")
        if len(parts) == 1 and parts[0]:
            return "v2", parts[0], None
        if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
            return "v2", parts[0], parts[2]
    elif path.startswith(V1_PREFIX) and path.endswith(V1_SUFFIX):
        name = path[len(V1_PREFIX) : -len(V1_SUFFIX)]
        if name and "/" not in name:
            return "v1", name, None
    return None


async def read_body(receive: Receive, length: int | None, limit: int) -> bytes:
    """The whole body, refusing (413) anything over ``limit`` bytes, chunked or not, before
    it is buffered."""
    if length is not None and length > limit:
        raise PayloadTooLargeError(f"request body of {length} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequestError("client disconnected before sending the whole body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _headers(scope: Scope) -> tuple[str | None, int | None, str | None, str | None]:
    """Inference-Header-Content-Length, Content-Length, traceparent and tracestate, in one
    pass. A repeated traceparent is joined as HTTP joins repeated fields, which no valid one
    matches (ignored, as the W3C asks); tracestate may come split over several."""
    split: str | None = None
    length: int | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit():
            length = int(value)
        elif key == b"inference-header-content-length":
            split = value.decode("latin-1")
        elif key == b"traceparent":
            text = value.decode("latin-1")
            traceparent = text if traceparent is None else f"{traceparent},{text}"
        elif key == b"tracestate":
            text = value.decode("latin-1")
            tracestate = text if tracestate is None else f"{tracestate},{text}"
    return split, length, traceparent, tracestate


class FastPath:
    """ASGI app: the inference routes here, anything else to ``app``."""

    def __init__(self, app: ASGIApp, dataplane: DataPlane) -> None:
        self.app, self.dataplane = app, dataplane
        self.limit = dataplane.settings.max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = match(scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            allow = [(b"allow", b"POST")]
            await _respond(send, 405, codec.error_body("Method Not Allowed"), JSON + allow)
        else:
            await self._serve(scope, receive, *found, send)

    async def _serve(
        self, scope: Scope, receive: Receive, protocol: str, name: str, raw: str | None, send: Send
    ) -> None:
        split, length, traceparent, tracestate = _headers(scope)

        async def work(model: OnnxModel) -> tuple[bytes, Headers]:
            body = await read_body(receive, length, self.limit)
            if protocol == "v2":
                return await self._v2(model, body, split)
            inputs, rows = v1.decode(body, model.inputs)
            return v1.encode(await self.dataplane.predict(model, inputs), rows), JSON

        outcome = await self.dataplane.handle(
            protocol, name, raw, work, traceparent=traceparent, tracestate=tracestate
        )
        if outcome.value is None:
            await _respond(send, outcome.status, codec.error_body(outcome.error), JSON)
        else:
            await _respond(send, 200, *outcome.value)

    async def _v2(self, model: OnnxModel, body: bytes, split: str | None) -> tuple[bytes, Headers]:
        decoded = codec.decode_infer(body, split, max_elements=self.limit)
        self.dataplane.adopt_request_id(decoded.id)
        response = await self.dataplane.infer(model, decoded)
        content, json_length = codec.encode_infer(response, decoded.binary_outputs)
        if not json_length:
            return content, JSON
        binary = [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(json_length).encode()),
        ]
        return content, binary


async def _respond(send: Send, status: int, content: bytes, headers: Headers) -> None:
    length = (b"content-length", str(len(content)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": content})
