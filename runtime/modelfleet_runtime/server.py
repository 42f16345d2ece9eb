"""Runs the runtime under uvicorn: wiring, the ready announcement, graceful shutdown.

``cli.serve_command`` calls ``serve(settings)``. On SIGTERM readiness turns 503 at once,
uvicorn stops accepting connections, in-flight requests finish within ``grace_period``, and
the process exits 0. The gRPC server (``grpc_api``) runs in the same loop, started and stopped
with the app: new calls get UNAVAILABLE once draining, calls in flight finish. With TLS
(``tls``), ``tls_server`` listens on the HTTP port in place of uvicorn's own listener, and
the files are watched for as long as the app runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import sys
from collections.abc import AsyncIterator
from functools import partial
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from modelfleet_runtime import grpc_api, http_limits, tls_server, tracing
from modelfleet_runtime.app import create_app
from modelfleet_runtime.config import Settings
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.models.registry import ModelRegistry
from modelfleet_runtime.models.repository import ModelRepository
from modelfleet_runtime.prefetch import Prefetch
from modelfleet_runtime.storage import open_source
from modelfleet_runtime.tls import TlsFiles

log = logging.getLogger(__name__)


class TransportUnavailableError(RuntimeError):
    """``--grpc-transport h2`` without its extra (uvicorn's HTTP/2 and zttp) installed."""


class DrainingServer(uvicorn.Server):
    """uvicorn, plus: the data plane stops being ready the moment a signal arrives."""

    def __init__(
        self, config: uvicorn.Config, dataplane: DataPlane, tls: TlsFiles | None = None
    ) -> None:
        super().__init__(config)
        self.dataplane, self.tls = dataplane, tls
        self.handshake_timeout = dataplane.settings.tls_handshake_timeout

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.dataplane.draining = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after shutting down; a drained shutdown is a clean
        # exit (0), which Kubernetes and shells should see as such.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up, but with TLS the HTTP port is ``tls_server``'s listener (the
        rest of uvicorn, its shutdown included, runs unchanged)."""
        if self.tls is None:
            return await super().startup(sockets)
        if sockets is not None:  # uvicorn's would serve them in plain text
            raise ValueError("with TLS, the server makes its own listening sockets")
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config
        try:
            listening = tls_server.listen(config.host, config.port, config.backlog)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)
        protocol = partial(  # as uvicorn's startup makes it
            config.http_protocol_class,  # type: ignore[call-arg]
            config=config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        tls = self.tls
        listener = tls_server.TlsListener(
            listening, protocol, lambda: tls.context, self.handshake_timeout
        )
        self.servers = [listener]  # type: ignore[list-item]  # uvicorn calls close, wait_closed
        host, port = listening[0].getsockname()[:2]
        log.info("HTTPS (TLS only) listening on %s:%d", host, port)
        self.started = True


def build(
    settings: Settings, tls: TlsFiles | None = None, prefetch: Prefetch | None = None
) -> tuple[Any, DataPlane]:
    """The app and its data plane, wired from settings (what tests and ``serve`` share);
    with ``tls``, gRPC serves it and its files are watched while the app runs; with
    ``prefetch``, the model's first listing, download and load are already under way."""
    metrics = prefetch.metrics if prefetch is not None else Metrics()
    registry = ModelRegistry(settings.model_name)
    tracer = tracing.start(settings)  # None unless --tracing: no OpenTelemetry at all
    if prefetch is None:
        source, loader = open_source(settings, metrics), OnnxModel.load
    else:  # its first listing, fetches and loads are the prefetch thread's
        source, loader = prefetch.source(), prefetch.load
    repository = ModelRepository(settings, registry, source, metrics, loader, tracer)
    dataplane = DataPlane(settings, registry, metrics, tracer)
    if tls is not None:
        metrics.tls_expiry.source = lambda: tls.current.not_after

    async def background() -> None:
        await asyncio.gather(repository.run(), _announce(settings, registry))

    @contextlib.asynccontextmanager
    async def grpc_service() -> AsyncIterator[None]:
        async with _watching(tls):
            if settings.grpc_port is None:
                yield
                return
            if settings.grpc_transport == "h2":
                from modelfleet_runtime import grpc_h2  # zttp: the 'h2' extra, opt-in

                grpc_server: grpc_api.GrpcServer = await grpc_h2.start(settings, dataplane, tls)
            else:
                grpc_server, _ = await grpc_api.start(settings, dataplane, tls)
            try:
                yield
            finally:  # calls in flight finish within the grace period
                await grpc_server.stop(settings.grace_period)

    return create_app(dataplane, metrics, background, grpc_service), dataplane


@contextlib.asynccontextmanager
async def _watching(tls: TlsFiles | None) -> AsyncIterator[None]:
    """``tls``'s files watched (if any) for as long as the block runs."""
    task = asyncio.ensure_future(tls.watch()) if tls is not None else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _announce(settings: Settings, registry: ModelRegistry) -> None:
    """Once the model serves, print a request a user can paste into a shell."""
    await registry.became_ready.wait()
    model = next(iter(registry.versions.values()))
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    scheme, trust = "http", ""
    if settings.tls:  # curl must trust the server's CA (and show its own certificate)
        scheme, trust = "https", "--cacert CA.pem "
        if settings.tls_client_ca_file is not None:
            trust += "--cert CLIENT.pem --key CLIENT.key "
    url = f"{scheme}://{host}:{settings.port}/v2/models/{model.name}/infer"
    body = json.dumps({"inputs": model.example_inputs()})
    where = f" (CA.pem: the CA that signed {settings.tls_cert_file})" if settings.tls else ""
    sys.stdout.write(
        f"\nModel '{model.name}' version {model.version} is ready. Try{where}:\n\n"
        f"  curl -s {trust}{url} -H 'content-type: application/json' -d '{body}'\n\n"
    )
    sys.stdout.flush()


def serve(settings: Settings, prefetch: Prefetch | None = None) -> int:
    if settings.grpc_transport == "h2" and settings.grpc_port is not None:
        try:
            from modelfleet_runtime import grpc_h2  # noqa: F401
        except ImportError as exc:
            raise TransportUnavailableError(
                f"--grpc-transport h2 needs uvicorn's HTTP/2: pip install 'modelfleet[h2]' ({exc})"
            ) from None
    tls = TlsFiles.from_settings(settings)  # TlsError: the files cannot be used
    app, dataplane = build(settings, tls, prefetch)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=http_limits.protocol_class(settings, dataplane.metrics),  # httptools, guarded
        ws="none",  # no WebSocket routes: an upgrade is answered as plain HTTP, nothing imported
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(settings.grace_period),
        server_header=False,
    )
    server = DrainingServer(config, dataplane, tls)
    server.run()  # a start-up failure (a port taken) exits non-zero inside uvicorn
    return 0
