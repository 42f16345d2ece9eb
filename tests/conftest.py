"""Suite-wide settings for every test, and for the server processes tests start."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def grpc_on_free_ports() -> Iterator[None]:
    """The runtime's gRPC server defaults to port 8081; servers started by tests (in process
    and as child processes, which inherit this environment) take a free port instead, so
    that several can run at once."""
    before = os.environ.get("MODELFLEET_GRPC_PORT")
    os.environ["MODELFLEET_GRPC_PORT"] = "0"
    yield
    if before is None:
        del os.environ["MODELFLEET_GRPC_PORT"]
    else:
        os.environ["MODELFLEET_GRPC_PORT"] = before
