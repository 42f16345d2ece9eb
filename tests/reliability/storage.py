"""Helpers for the storage-fault checks: a moto S3 server on loopback, and ``modelfleet
serve`` pointed at it (through the fault proxy) with short retry settings."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from moto.server import ThreadedMotoServer

from tests.helpers.aws import s3_client
from tests.helpers.runtime import Served, serve_process

BUCKET = "models"
ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}


@dataclass
class Moto:
    endpoint: str
    port: int
    client: Any


@contextmanager
def moto_s3() -> Iterator[Moto]:
    """moto's S3 on 127.0.0.1 (a free port), emptied, with bucket ``models``."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    client = s3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    try:
        yield Moto(endpoint, port, client)
    finally:
        server.stop()


def s3_args(endpoint: str, prefix: str = "m", **retry: float) -> list[str]:
    """``modelfleet serve`` options for ``s3://models/<prefix>`` at ``endpoint``."""
    values = {"initial": 0.2, "max": 1.0, "deadline": 3.0} | retry
    return [
        "--model-uri", f"s3://{BUCKET}/{prefix}", "--name", "m",
        "--s3-endpoint-url", endpoint, "--s3-addressing-style", "path",
        "--s3-region", "us-east-1",
        "--retry-initial-backoff", str(values["initial"]),
        "--retry-max-backoff", str(values["max"]),
        "--retry-deadline", str(values["deadline"]),
    ]  # fmt: skip


@contextmanager
def serve_s3(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    with serve_process(tmp, *args, env=env, wait_ready=False) as served:
        yield served


def status(url: str, path: str) -> int:
    try:
        return httpx.get(f"{url}{path}", timeout=2).status_code
    except httpx.TransportError:
        return 0


def infer(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/m/infer", json={"inputs": [ROW]}, timeout=10)


def files_under(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())
