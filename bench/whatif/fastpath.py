"""PROPOSED for runtime/modelfleet_runtime/fastpath.py (the lead's call): the V2 infer route
served straight from ASGI, in front of the FastAPI app, which keeps every other route, the
OpenAPI document and the docs.

Why: profiling (bench/RESULTS.md, "Where the time goes") shows about half of the event-loop
thread's CPU per MLP-small request spent in FastAPI/Starlette layers around the route
(middlewares, routing, dependency solving for the path parameters, Request/Response objects),
and the rest in our own code. This wrapper does exactly what app.py's ``infer`` route does
(admission, model lookup, bounded body read, decode, DataPlane.infer, encode, metrics, the
``{"error": ...}`` body) with none of those layers. It is measured by bench/whatif/serve.py.

Wire-up in app.create_app / server.build: ``return FastInfer(app, dataplane, metrics)``.
If authentication lands as a FastAPI dependency or middleware, the same check must run here.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelfleet_runtime import codec, logs
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.errors import BadRequestError, PayloadTooLargeError, ServingError
from modelfleet_runtime.metrics import Metrics

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
PREFIX, SUFFIX = "/v2/models/", "/infer"
JSON = [(b"content-type", b"application/json")]


class FastInfer:
    """ASGI app: POST /v2/models/{name}[/versions/{v}]/infer here, anything else to ``app``."""

    def __init__(self, app: ASGIApp, dataplane: DataPlane, metrics: Metrics) -> None:
        self.app, self.dataplane, self.metrics = app, dataplane, metrics
        self.limit = dataplane.settings.max_body_size
        self._ids = itertools.count(1)  # request ids: no os.urandom per request
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._gauges: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not path.startswith(PREFIX)
            or not path.endswith(SUFFIX)
        ):
            await self.app(scope, receive, send)
            return
        parts = path[len(PREFIX) : -len(SUFFIX)].split("/")
        if len(parts) == 1 and parts[0]:
            await self._infer(scope, receive, send, parts[0], None)
        elif len(parts) == 3 and parts[0] and parts[1] == "versions":
            await self._infer(scope, receive, send, parts[0], parts[2])
        else:
            await self.app(scope, receive, send)

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        started = time.perf_counter()
        dp = self.dataplane
        label = name if name == dp.registry.name else "unknown"
        token = logs.request_id.set(f"{next(self._ids):016x}")
        gauge = self._gauges.get(label) or self._gauges.setdefault(
            label, self.metrics.in_flight.labels(label)
        )
        gauge.inc()
        model_version, status = "", 200
        try:
            with dp.admit():
                number = _version(version)
                model = dp.model(name, number)
                model_version = str(model.version)
                header_length, length = _headers(scope)
                body = await _read_body(receive, length, self.limit)
                decoded = codec.decode_infer(body, header_length, max_elements=self.limit)
                response = await dp.infer(model, decoded)
                content, json_length = codec.encode_infer(response, decoded.binary_outputs)
            headers = JSON
            if json_length:
                headers = [
                    (b"content-type", b"application/octet-stream"),
                    (b"inference-header-content-length", str(json_length).encode()),
                ]
        except ServingError as exc:
            status = exc.status_code
            (log.warning if status >= 500 else log.info)("%s", exc.message)
            content, headers = codec.error_body(exc.message), JSON
        except Exception as exc:  # the same last resort as handlers._unexpected
            log.exception("unhandled error", exc_info=exc)
            status = 500
            content, headers = codec.error_body(f"internal error: {type(exc).__name__}"), JSON
        finally:
            gauge.dec()
            logs.request_id.reset(token)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})
        self._observe(label, model_version, status, time.perf_counter() - started)

    def _observe(self, model: str, version: str, status: int, seconds: float) -> None:
        key = (model, version, str(status))
        series = self._series.get(key)
        if series is None:
            m = self.metrics
            series = self._series[key] = (
                m.requests.labels(model, version, "v2", str(status)),
                m.request_duration.labels(model, version, "v2"),
            )
        series[0].inc()
        series[1].observe(seconds)


def _version(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or raw.startswith("0"):
        raise BadRequestError(f"model version must be a positive integer, got {raw!r}")
    return int(raw)


def _headers(scope: Scope) -> tuple[str | None, int | None]:
    header_length: str | None = None
    length: int | None = None
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit():
            length = int(value)
        elif key == b"inference-header-content-length":
            header_length = value.decode("latin-1")
    return header_length, length


async def _read_body(receive: Receive, length: int | None, limit: int) -> bytes:
    """The whole body, refusing (413) anything over ``limit`` before it is buffered."""
    if length is not None and length > limit:
        raise PayloadTooLargeError(f"request body of {length} bytes exceeds {limit} bytes")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        return body  # the common case: one chunk, no copy
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
