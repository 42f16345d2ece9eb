"""Ways to run the runtime in tests: in-process over httpx's ASGI transport, and as a real
``modelfleet serve`` process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from modelfleet_runtime.app import create_app
from modelfleet_runtime.config import Settings
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.models.registry import ModelRegistry
from tests.helpers import onnx_models
from tests.helpers.waiting import http_status, wait_until

__all__ = ["wait_until"]  # re-exported: most tests import it from here

GRPC_TRANSPORTS = ["grpc", "h2"]
"""What may serve the gRPC port (``--grpc-transport``): tests of the port run on both."""


@dataclass
class InProcess:
    client: httpx.AsyncClient
    dataplane: DataPlane
    metrics: Metrics


def loaded_app(
    name: str, models: dict[int, Path], **settings: Any
) -> tuple[Any, DataPlane, Metrics]:
    """The real app with ``models`` (version -> model.onnx) already loaded and serving."""
    config = Settings(name=name, **settings)
    registry = ModelRegistry(name)
    for version, path in sorted(models.items()):
        registry.publish(OnnxModel.load(name, version, path, config))
    registry.settle()  # what the repository does after its first pass
    metrics = Metrics()
    dataplane = DataPlane(config, registry, metrics)
    return create_app(dataplane, metrics), dataplane, metrics


@asynccontextmanager
async def open_in_process(
    tmp_path: Path, name: str, versions: dict[int, bytes], **settings: Any
) -> AsyncIterator[InProcess]:
    """The real app serving ``versions`` (version -> model bytes, written under ``tmp_path``),
    reached over httpx's ASGI transport; the data plane is closed on the way out."""
    root = onnx_models.write_repository(tmp_path / name, versions)
    paths = {v: root / str(v) / "model.onnx" for v in versions}
    app, dataplane, metrics = loaded_app(name, paths, **settings)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield InProcess(client, dataplane, metrics)
    await dataplane.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def stop_process(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited after ``timeout`` s; reaps it.
    ``communicate``, not ``wait``: it drains a piped stdout, which could otherwise fill up and
    block the exit. A process that has already exited is only reaped."""
    process.terminate()
    try:
        process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def stop_process_group(process: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM to the process group a ``start_new_session`` child leads (a server and what it
    started), then SIGKILL if it has not exited after ``timeout`` s; reaps it."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@contextmanager
def serve_process(
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Served]:
    """Run ``modelfleet serve ARGS`` on a free loopback port; stop it (SIGKILL if it hangs).
    ``tls``: the server speaks https (ARGS name its files), checked with this client context."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.setdefault("MODELFLEET_MODEL_DIR", str(tmp / "model-cache"))
    command = [sys.executable, "-m", "modelfleet_runtime.cli", "serve", "--port", str(port), *args]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=full_env)
    served = Served(process, f"{'https' if tls else 'http'}://127.0.0.1:{port}", log)
    verify = tls or True
    try:
        live = f"{served.url}/v2/health/live"
        wait_until(
            lambda: process.poll() is not None or http_status(live, verify=verify) == 200,
            30,
            "live",
        )
        assert process.poll() is None, served.output()
        if wait_ready:
            ready = f"{served.url}/v2/health/ready"
            wait_until(lambda: http_status(ready, verify=verify) == 200, 30, "ready")
        yield served
    finally:
        stop_process(process)
