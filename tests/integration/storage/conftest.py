"""Servers for the storage tests: SeaweedFS (one per session: it takes fixed ports), a moto
S3 server per test (port 0, for fault injection), the GCS emulator per test, and a real OCI
registry per test (``tests/helpers/registry.py``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcp_storage_emulator.server import create_server
from moto.server import ThreadedMotoServer

from tests.helpers.aws import s3_client
from tests.helpers.environment import isolate_aws
from tests.helpers.registry import Registry, run_registry
from tests.helpers.runtime import stop_process_group

SEAWEED_S3_PORT = 8333
SEAWEED_START_DEADLINE = 60.0


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Test credentials only; no AWS config from the machine can leak in."""
    isolate_aws(monkeypatch, tmp_path)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_ready(endpoint: str, process: subprocess.Popen[bytes], log: Path) -> None:
    client = s3_client(endpoint)
    deadline = time.monotonic() + SEAWEED_START_DEADLINE
    while True:
        if process.poll() is not None:
            pytest.fail(f"SeaweedFS exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            client.list_buckets()
            return
        except Exception:  # not up yet; the deadline bounds the wait
            if time.monotonic() > deadline:
                pytest.fail(f"SeaweedFS not ready in {SEAWEED_START_DEADLINE} s")
        time.sleep(0.2)  # poll interval of a condition with a deadline, not a fixed wait


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 server (``weed mini``) on 127.0.0.1:8333; yields its endpoint URL."""
    if _port_open(SEAWEED_S3_PORT):
        pytest.fail(f"port {SEAWEED_S3_PORT} is taken: another SeaweedFS is running")
    folder = tmp_path_factory.mktemp("seaweedfs")
    weed = Path(sys.executable).parent / "weed"
    log = folder / "weed.log"
    command = [
        str(weed), "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-admin.ui=false", "-webdav=false",
    ]  # fmt: skip
    (folder / "data").mkdir()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
        )
    endpoint = f"http://127.0.0.1:{SEAWEED_S3_PORT}"
    try:
        _wait_ready(endpoint, process, log)
        yield endpoint
    finally:
        stop_process_group(process)


@pytest.fixture
def moto_server() -> Iterator[MotoS3]:
    """moto's S3 server on 127.0.0.1 (a free port), with bucket ``models`` created."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto = MotoS3(server, f"http://{host}:{port}")
    # moto's backends are process-wide: start each test from an empty store.
    urllib.request.urlopen(
        urllib.request.Request(f"{moto.endpoint}/moto-api/reset", method="POST"), timeout=10
    ).close()
    moto.client.create_bucket(Bucket="models")
    try:
        yield moto
    finally:
        moto.stop()


class MotoS3:
    """A running moto server that a test may stop early (storage outage)."""

    def __init__(self, server: ThreadedMotoServer, endpoint: str) -> None:
        self._server = server
        self.endpoint = endpoint
        self.client = s3_client(endpoint)
        self._stopped = False

    def stop(self) -> None:
        """Stop the server; later connections are refused."""
        if not self._stopped:
            self._stopped = True
            self._server.stop()


@pytest.fixture
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator in memory on 127.0.0.1 (a free port); yields its endpoint."""
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    port = server._api._httpd.server_address[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """Debian's docker-registry on 127.0.0.1 with TLS and basic auth, storage under tmp_path."""
    with run_registry(tmp_path / "registry") as running:
        yield running
