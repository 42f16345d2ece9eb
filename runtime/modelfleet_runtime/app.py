"""The HTTP face of the runtime: ``create_app`` builds the ASGI application.

Inference (V2 ``infer``, V1 ``:predict``) is served by ``fastpath.FastPath`` straight from
ASGI; this FastAPI app holds every other route (health, metadata, /metrics, /docs) and the
OpenAPI document for all of them (written by ``openapi.py``). Bearer-token authentication,
when configured, sits in front of both. Every error leaves as ``{"error": "..."}``.
``server.py`` runs the app under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelfleet_runtime import __version__, codec
from modelfleet_runtime.auth import BearerAuth, token_source
from modelfleet_runtime.dataplane import DataPlane, parse_version
from modelfleet_runtime.fastpath import ASGIApp, FastPath
from modelfleet_runtime.http_errors import install_error_handlers
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.openapi import (
    MODEL_ERRORS,
    NOT_READY,
    Document,
    IndexEntry,
    Live,
    ModelMetadata,
    ModelName,
    Ready,
    ServerMetadata,
    V1ModelStatus,
    Version,
)

JSON = "application/json"


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

    # Swagger UI 5 from the fastapi-offline package, served from /docs/assets: /docs needs no
    # internet, and the auth middleware's /docs/ exemption covers its assets.
    app = FastAPIOffline(
        title="ModelFleet inference runtime",
        version=__version__,
        summary="Open Inference Protocol (V2) and V1 :predict over ONNX Runtime",
        docs_url="/docs",
        redoc_url=None,
        static_url="/docs/assets",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    _add_health_routes(app, dataplane, metrics)
    _add_metadata_routes(app, dataplane)
    tokens = token_source(dataplane.settings)
    app.openapi = Document(app, dataplane.registry, auth=tokens is not None)  # type: ignore[method-assign]
    metrics.in_flight.labels(dataplane.registry.name).set_function(lambda: dataplane.in_flight)
    served: ASGIApp = FastPath(app, dataplane)
    if tokens is not None:  # outermost: a refused request reaches no route and no body
        served = BearerAuth(served, tokens)
    return served


def _json(value: Any, status: int = 200) -> Response:
    return Response(codec.dumps(value), status_code=status, media_type=JSON)


def _flag(ok: bool) -> Response:
    # Kubernetes probes read the status; 503 matches KServe for "not ready".
    return _json({"ready" if ok else "error": True if ok else "not ready"}, 200 if ok else 503)


def _add_health_routes(app: FastAPI, dataplane: DataPlane, metrics: Metrics) -> None:
    @app.get("/v2/health/live", tags=["health"], response_model=Live)
    async def live() -> Response:
        return _json({"live": dataplane.live()})

    @app.get("/v2/health/ready", tags=["health"], response_model=Ready, responses=NOT_READY)
    async def ready() -> Response:
        return _flag(dataplane.ready())

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_metadata_routes(app: FastAPI, dataplane: DataPlane) -> None:
    @app.get("/v2", tags=["v2"], response_model=ServerMetadata)
    async def server_metadata() -> Response:
        return _json(dataplane.server_metadata())

    @app.get("/v2/models/{name}", **_model_route(ModelMetadata))
    async def model_metadata(name: ModelName) -> Response:
        return _json(dataplane.model_metadata(name))

    @app.get("/v2/models/{name}/versions/{version}", **_model_route(ModelMetadata))
    async def version_metadata(name: ModelName, version: Version) -> Response:
        return _json(dataplane.model_metadata(name, parse_version(version)))

    @app.get("/v2/models/{name}/ready", **_model_route(Ready))
    async def model_ready(name: ModelName) -> Response:
        return _flag(dataplane.model_ready(name))

    @app.get("/v2/models/{name}/versions/{version}/ready", **_model_route(Ready))
    async def version_ready(name: ModelName, version: Version) -> Response:
        return _flag(dataplane.model_ready(name, parse_version(version)))

    @app.post("/v2/repository/index", tags=["v2"], response_model=list[IndexEntry])
    async def repository_index() -> Response:
        return _json(dataplane.repository_index())

    @app.get("/v1/models/{name}", **_model_route(V1ModelStatus, "v1"))
    async def v1_model(name: ModelName) -> Response:
        return _json({"name": name, "ready": dataplane.model_ready(name)})


def _model_route(answer: type[Any], tag: str = "v2") -> dict[str, Any]:
    return {"tags": [tag], "response_model": answer, "responses": MODEL_ERRORS}
