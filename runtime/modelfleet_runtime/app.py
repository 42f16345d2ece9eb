"""The HTTP face of the runtime: ``create_app`` builds the FastAPI application.

Routes are thin: read the body (bounded), decode with ``codec``, call the ``DataPlane``,
encode the answer, count it. Every error leaves as ``{"error": "..."}`` through the handlers
in ``handlers.py``. ``server.py`` runs the app under uvicorn.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from swagger_ui_bundle import swagger_ui_path

from modelfleet_runtime import __version__, codec, logs
from modelfleet_runtime.auth import BearerAuth, token_source
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.errors import BadRequestError, PayloadTooLargeError
from modelfleet_runtime.handlers import install_error_handlers
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.protocol import (
    ErrorModel,
    InferenceRequestModel,
    InferenceResponseModel,
    V1PredictRequestModel,
    V1PredictResponseModel,
)

JSON = "application/json"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorModel} for code in (400, 401, 404, 413, 503)
}


def _body_doc(model: type[Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything over ``limit`` bytes, chunked or not, before
    it is buffered."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLargeError(f"request body of {length} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_version(raw: str) -> int:
    if not raw.isdigit() or raw.startswith("0"):
        raise BadRequestError(f"model version must be a positive integer, got {raw!r}")
    return int(raw)


def create_app(
    dataplane: DataPlane,
    metrics: Metrics,
    background: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The runtime's application. ``background`` (the model repository's loop) starts with
    the app and is cancelled when it stops."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.ensure_future(background()) if background is not None else None
        try:
            yield
        finally:
            dataplane.draining = True
            if task is not None:
                task.cancel()
            await dataplane.aclose()

    app = FastAPI(
        title="ModelFleet inference runtime",
        version=__version__,
        summary="Open Inference Protocol (V2) and V1 :predict over ONNX Runtime",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    tokens = token_source(dataplane.settings)
    if tokens is not None:  # outermost of ours: a refused request reaches no route or body
        app.add_middleware(BearerAuth, tokens=tokens)
    _add_docs(app)
    _add_health_routes(app, dataplane, metrics)
    _add_v2_routes(app, dataplane, metrics)
    _add_v1_routes(app, dataplane, metrics)
    return app


def _add_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-bundle package: /docs works with no internet."""
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="ModelFleet runtime",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )


def _json(value: Any, status: int = 200) -> Response:
    return Response(codec.dumps(value), status_code=status, media_type=JSON)


def _flag(ok: bool) -> Response:
    # Kubernetes probes read the status; 503 matches KServe for "not ready".
    return _json({"ready" if ok else "error": True if ok else "not ready"}, 200 if ok else 503)


def _add_health_routes(app: FastAPI, dataplane: DataPlane, metrics: Metrics) -> None:
    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Response:
        return _json({"live": dataplane.live()})

    @app.get("/v2/health/ready", tags=["health"], responses={503: {"model": ErrorModel}})
    async def ready() -> Response:
        return _flag(dataplane.ready())

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_v2_routes(app: FastAPI, dataplane: DataPlane, metrics: Metrics) -> None:
    limit = dataplane.settings.max_body_size

    @app.get("/v2", tags=["v2"])
    async def server_metadata() -> Response:
        return _json(dataplane.server_metadata())

    @app.get("/v2/models/{name}", tags=["v2"], responses=ERRORS)
    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"], responses=ERRORS)
    async def model_metadata(name: str, version: str | None = None) -> Response:
        number = parse_version(version) if version is not None else None
        return _json(dataplane.model_metadata(name, number))

    @app.get("/v2/models/{name}/ready", tags=["v2"], responses=ERRORS)
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"], responses=ERRORS)
    async def model_ready(name: str, version: str | None = None) -> Response:
        number = parse_version(version) if version is not None else None
        return _flag(dataplane.model_ready(name, number))

    @app.post("/v2/repository/index", tags=["v2"])
    async def repository_index() -> Response:
        return _json(dataplane.repository_index())

    infer_doc: dict[str, Any] = {
        "responses": {200: {"model": InferenceResponseModel}, **ERRORS},
        "openapi_extra": _body_doc(InferenceRequestModel),
        "tags": ["v2"],
    }

    @app.post("/v2/models/{name}/infer", **infer_doc)
    @app.post("/v2/models/{name}/versions/{version}/infer", **infer_doc)
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        started = time.perf_counter()
        with _Observed(metrics, dataplane, name, "v2", started) as observed, dataplane.admit():
            model = dataplane.model(name, parse_version(version) if version else None)
            observed.version = str(model.version)
            body = await read_body(request, limit)
            header = request.headers.get(codec.HEADER_LENGTH)
            decoded = codec.decode_infer(body, header, max_elements=limit)
            response = await dataplane.infer(model, decoded)
            content, json_length = codec.encode_infer(response, decoded.binary_outputs)
        if json_length:
            headers = {"Inference-Header-Content-Length": str(json_length)}
            return Response(content, media_type="application/octet-stream", headers=headers)
        return Response(content, media_type=JSON)


def _add_v1_routes(app: FastAPI, dataplane: DataPlane, metrics: Metrics) -> None:
    limit = dataplane.settings.max_body_size

    @app.get("/v1/models/{name}", tags=["v1"], responses=ERRORS)
    async def v1_model(name: str) -> Response:
        return _json({"name": name, "ready": dataplane.model_ready(name)})

    @app.post(
        "/v1/models/{name}:predict",
        tags=["v1"],
        responses={200: {"model": V1PredictResponseModel}, **ERRORS},
        openapi_extra=_body_doc(V1PredictRequestModel),
    )
    async def v1_predict(request: Request, name: str) -> Response:
        started = time.perf_counter()
        with _Observed(metrics, dataplane, name, "v1", started) as observed, dataplane.admit():
            model = dataplane.model(name)
            observed.version = str(model.version)
            body = await read_body(request, limit)
            inputs, rows = codec.decode_v1(body, model.inputs)
            outputs = await dataplane.predict(model, inputs)
        return Response(codec.encode_v1(outputs, rows), media_type=JSON)


class _Observed:
    """Counts one inference request and its latency, whatever way it ends."""

    def __init__(
        self, metrics: Metrics, dataplane: DataPlane, name: str, protocol: str, started: float
    ) -> None:
        # Only the served name becomes a label value, never an arbitrary URL segment.
        self.model = name if name == dataplane.registry.name else "unknown"
        self.metrics, self.protocol, self.started = metrics, protocol, started
        self.version = ""
        self._token = logs.request_id.set(uuid.uuid4().hex[:16])
        self._gauge = metrics.in_flight.labels(self.model)

    def __enter__(self) -> _Observed:
        self._gauge.inc()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        self._gauge.dec()
        status = 200 if exc is None else getattr(exc, "status_code", 500)
        elapsed = time.perf_counter() - self.started
        m = self.metrics
        m.requests.labels(self.model, self.version, self.protocol, str(status)).inc()
        m.request_duration.labels(self.model, self.version, self.protocol).observe(elapsed)
        logs.request_id.reset(self._token)
