"""The HTTP face of the runtime: ``create_app`` builds the ASGI application.

Inference (V2 ``infer``, V1 ``:predict``) is served by ``fastpath.FastPath`` straight from
ASGI; this FastAPI app holds every other route (health, metadata, /metrics, /docs) and the
OpenAPI document for all of them. Bearer-token authentication, when configured, sits in front
of both. Every error leaves as ``{"error": "..."}``. ``server.py`` runs the app under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from swagger_ui_bundle import swagger_ui_path

from modelfleet_runtime import __version__, codec
from modelfleet_runtime.auth import BearerAuth, token_source
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.fastpath import ASGIApp, FastPath, parse_version
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


def create_app(
    dataplane: DataPlane,
    metrics: Metrics,
    background: Callable[[], Awaitable[None]] | None = None,
    services: Callable[[], AbstractAsyncContextManager[None]] | None = None,
) -> ASGIApp:
    """The runtime's application. ``services`` (the gRPC server) are entered at start-up, so
    one that cannot start fails the start; ``background`` (the model repository's loop) starts
    with the app. At shutdown the background is cancelled, then the services close (calls in
    flight finish), then the data plane."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with services() if services is not None else contextlib.nullcontext():
                task = asyncio.ensure_future(background()) if background is not None else None
                try:
                    yield
                finally:
                    dataplane.draining = True
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
        finally:
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
    _add_docs(app)
    _add_health_routes(app, dataplane, metrics)
    _add_metadata_routes(app, dataplane)
    _document_inference(app)
    metrics.in_flight.labels(dataplane.registry.name).set_function(lambda: dataplane.in_flight)
    served: ASGIApp = FastPath(app, dataplane, metrics)
    tokens = token_source(dataplane.settings)
    if tokens is not None:  # outermost: a refused request reaches no route and no body
        served = BearerAuth(served, tokens)
    return served


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


def _add_metadata_routes(app: FastAPI, dataplane: DataPlane) -> None:
    @app.get("/v2", tags=["v2"])
    async def server_metadata() -> Response:
        return _json(dataplane.server_metadata())

    @app.get("/v2/models/{name}", tags=["v2"], responses=ERRORS)
    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"], responses=ERRORS)
    async def model_metadata(name: str, version: str | None = None) -> Response:
        return _json(dataplane.model_metadata(name, parse_version(version)))

    @app.get("/v2/models/{name}/ready", tags=["v2"], responses=ERRORS)
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"], responses=ERRORS)
    async def model_ready(name: str, version: str | None = None) -> Response:
        return _flag(dataplane.model_ready(name, parse_version(version)))

    @app.post("/v2/repository/index", tags=["v2"])
    async def repository_index() -> Response:
        return _json(dataplane.repository_index())

    @app.get("/v1/models/{name}", tags=["v1"], responses=ERRORS)
    async def v1_model(name: str) -> Response:
        return _json({"name": name, "ready": dataplane.model_ready(name)})


def _document_inference(app: FastAPI) -> None:
    """OpenAPI entries for the routes ``FastPath`` serves (they never reach FastAPI)."""
    docs = APIRouter()
    infer: dict[str, Any] = {
        "responses": {200: {"model": InferenceResponseModel}, **ERRORS},
        "openapi_extra": _body_doc(InferenceRequestModel),
        "tags": ["v2"],
        "summary": "Infer",
    }
    docs.post("/v2/models/{name}/infer", **infer)(_served_by_fastpath)
    docs.post("/v2/models/{name}/versions/{version}/infer", **infer)(_served_by_fastpath)
    docs.post(
        "/v1/models/{name}:predict",
        responses={200: {"model": V1PredictResponseModel}, **ERRORS},
        openapi_extra=_body_doc(V1PredictRequestModel),
        tags=["v1"],
        summary="Predict",
    )(_served_by_fastpath)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=[*app.routes, *docs.routes],
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _served_by_fastpath(name: str) -> None:
    """Documentation only: ``fastpath.FastPath`` answers these paths before FastAPI."""
    raise NotImplementedError(name)
