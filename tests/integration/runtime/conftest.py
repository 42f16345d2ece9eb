"""Fixtures: the runtime's real app, in-process, serving tiny models built by onnx.helper."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import onnx_models
from tests.helpers.runtime import InProcess, loaded_app

OpenClient = Callable[..., AbstractAsyncContextManager[InProcess]]


@pytest.fixture
def open_client(tmp_path: Path) -> OpenClient:
    """``async with open_client(name, {version: model_bytes}, **settings) as served``."""

    @asynccontextmanager
    async def opener(
        name: str, versions: dict[int, bytes], **settings: Any
    ) -> AsyncIterator[InProcess]:
        root = onnx_models.write_repository(tmp_path / name, versions)
        paths = {v: root / str(v) / "model.onnx" for v in versions}
        app, dataplane, metrics = loaded_app(name, paths, **settings)
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield InProcess(client, dataplane, metrics)
        await dataplane.aclose()

    return opener


@pytest.fixture
async def adder(open_client: OpenClient) -> AsyncIterator[InProcess]:
    """Model 'adder': output0 = input0 + version, [batch, 4] float32, versions 1 and 2."""
    versions = {1: onnx_models.add_constant(1.0), 2: onnx_models.add_constant(2.0)}
    async with open_client("adder", versions) as served:
        yield served
