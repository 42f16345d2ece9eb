"""Runs the runtime under uvicorn: wiring, the ready announcement, graceful shutdown.

``cli.serve_command`` calls ``serve(settings)``. On SIGTERM readiness turns 503 at once,
uvicorn stops accepting connections, in-flight requests finish within ``grace_period``, and
the process exits 0. The gRPC server (``grpc_api``) runs in the same loop, started and stopped
with the app: new calls get UNAVAILABLE once draining, calls in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

import uvicorn

from modelfleet_runtime import grpc_api
from modelfleet_runtime.app import create_app
from modelfleet_runtime.config import Settings
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.models.registry import ModelRegistry
from modelfleet_runtime.models.repository import ModelRepository
from modelfleet_runtime.storage import open_source

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn, plus: the data plane stops being ready the moment a signal arrives."""

    def __init__(self, config: uvicorn.Config, dataplane: DataPlane) -> None:
        super().__init__(config)
        self.dataplane = dataplane

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.dataplane.draining = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after shutting down; a drained shutdown is a clean
        # exit (0), which Kubernetes and shells should see as such.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def build(settings: Settings) -> tuple[Any, DataPlane]:
    """The app and its data plane, wired from settings (what tests and ``serve`` share)."""
    metrics = Metrics()
    registry = ModelRegistry(settings.model_name)
    repository = ModelRepository(settings, registry, open_source(settings, metrics), metrics)
    dataplane = DataPlane(settings, registry, metrics)

    async def background() -> None:
        await asyncio.gather(repository.run(), _announce(settings, registry))

    @contextlib.asynccontextmanager
    async def grpc_service() -> AsyncIterator[None]:
        if settings.grpc_port is None:
            yield
            return
        grpc_server, _ = await grpc_api.start(settings, dataplane)
        try:
            yield
        finally:  # calls in flight finish within the grace period
            await grpc_server.stop(settings.grace_period)

    return create_app(dataplane, metrics, background, grpc_service), dataplane


async def _announce(settings: Settings, registry: ModelRegistry) -> None:
    """Once the model serves, print a request a user can paste into a shell."""
    await registry.became_ready.wait()
    model = next(iter(registry.versions.values()))
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}/v2/models/{model.name}/infer"
    body = json.dumps({"inputs": model.example_inputs()})
    sys.stdout.write(
        f"\nModel '{model.name}' version {model.version} is ready. Try:\n\n"
        f"  curl -s {url} -H 'content-type: application/json' -d '{body}'\n\n"
    )
    sys.stdout.flush()


def serve(settings: Settings) -> int:
    app, dataplane = build(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(settings.grace_period),
        server_header=False,
    )
    server = DrainingServer(config, dataplane)
    server.run()  # a start-up failure (a port taken) exits non-zero inside uvicorn
    return 0
