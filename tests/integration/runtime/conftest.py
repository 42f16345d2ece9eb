"""Fixtures: the runtime's real app, in-process, serving tiny models built by onnx.helper."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.helpers import onnx_models
from tests.helpers.runtime import InProcess, open_in_process

OpenClient = Callable[..., AbstractAsyncContextManager[InProcess]]


@pytest.fixture
def open_client(tmp_path: Path) -> OpenClient:
    """``async with open_client(name, {version: model_bytes}, **settings) as served``."""
    return functools.partial(open_in_process, tmp_path)


@pytest.fixture
async def adder(open_client: OpenClient) -> AsyncIterator[InProcess]:
    """Model 'adder': output0 = input0 + version, [batch, 4] float32, versions 1 and 2."""
    versions = {1: onnx_models.add_constant(1.0), 2: onnx_models.add_constant(2.0)}
    async with open_client("adder", versions) as served:
        yield served
