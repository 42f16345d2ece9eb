"""The runtime imports the client distribution for its tensor codec and gRPC messages only:
a server start does not pay for the clients' transports (``modelfleet_client/__init__.py``
imports ``Client`` and ``AsyncClient`` on first use), while ``from modelfleet_client import
Client`` works as before."""

from __future__ import annotations

import subprocess
import sys

import pytest

import modelfleet_client


def test_a_server_start_does_not_import_the_clients() -> None:
    script = (
        "import sys, modelfleet_runtime.cli, modelfleet_runtime.server\n"
        "print(sorted(m for m in sys.modules if m.startswith(('modelfleet_client.', 'httpx'))))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout
    assert "modelfleet_client.tensors" in loaded  # the codec's part is there
    assert "modelfleet_client.client" not in loaded
    assert "'httpx'" not in loaded


def test_the_clients_import_from_the_package() -> None:
    from modelfleet_client import AsyncClient, Client, InferenceServerError
    from modelfleet_client.client import AsyncClient as Async
    from modelfleet_client.client import Client as Blocking

    assert (Client, AsyncClient) == (Blocking, Async)
    assert issubclass(InferenceServerError, Exception)
    assert set(modelfleet_client.__all__) >= {"Client", "AsyncClient", "InferenceServerError"}
    misspelt = "Klient"  # mypy refuses the attribute itself, as it should
    with pytest.raises(AttributeError, match="no attribute 'Klient'"):
        getattr(modelfleet_client, misspelt)


def test_dir_lists_the_lazy_names() -> None:
    assert {"Client", "AsyncClient", "InferenceServerError"} <= set(dir(modelfleet_client))
