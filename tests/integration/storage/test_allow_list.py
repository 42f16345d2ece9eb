"""The model URI allow-lists (RELIABILITY S12): a refused URI opens no connection. A loopback
listener records every connection; the last test shows it does record one when allowed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet_runtime.storage import NotAllowedError, UnavailableError, open_source

from .helpers import RecordingProxy, settings


@pytest.fixture
def listener() -> Iterator[RecordingProxy]:
    """A loopback listener that counts connections and closes them."""
    proxy = RecordingProxy(target=None)
    yield proxy
    proxy.close()


def _cases(url: str) -> list[tuple[str, dict[str, Any]]]:
    host = url.removeprefix("http://")
    return [
        ("s3://models/iris", {"s3_endpoint_url": url, "allowed_hosts": ["s3.example.com"]}),
        ("gs://models/iris", {"gcs_endpoint_url": url, "allowed_hosts": ["*.googleapis.com"]}),
        (f"{url}/iris.onnx", {"allowed_hosts": ["models.example.com", "127.0.0.1:1"]}),
        (f"{url}/iris.onnx", {"allowed_schemes": ["s3", "https"]}),
        ("http://169.254.169.254/latest/meta-data/iris.onnx", {}),
        (f"https://{host}/iris.onnx", {"allowed_hosts": ["*.example.com"]}),
        ("file:///etc/iris.onnx", {"allowed_schemes": ["s3"]}),
        ("/etc/iris.onnx", {"allowed_schemes": ["s3"]}),
        (f"ftp://{host}/iris.onnx", {}),
    ]


@pytest.mark.parametrize("case", range(len(_cases("http://127.0.0.1:1"))))
async def test_refused_before_any_connection(
    listener: RecordingProxy, tmp_path: Path, case: int
) -> None:
    uri, overrides = _cases(listener.url)[case]
    with pytest.raises(NotAllowedError) as caught:
        open_source(settings(tmp_path, uri, **overrides))
    assert "allowed" in str(caught.value)
    assert listener.connections == 0
    assert not (tmp_path / "models").exists()


async def test_listed_host_is_contacted(listener: RecordingProxy, tmp_path: Path) -> None:
    """The positive control: with the endpoint listed, the listener does see a connection."""
    s = settings(
        tmp_path,
        "s3://models/iris",
        s3_endpoint_url=listener.url,
        allowed_hosts=[listener.url.removeprefix("http://")],
        retry_deadline=0.3,
    )
    with pytest.raises(UnavailableError):
        await open_source(s).list_versions()
    assert listener.connections >= 1
