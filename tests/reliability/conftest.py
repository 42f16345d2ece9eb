"""Fixtures for the reliability checks: the real app in-process over httpx's ASGI transport,
and a clean AWS environment for the tests that run real servers against moto."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.helpers.environment import isolate_aws
from tests.helpers.runtime import InProcess, open_in_process

# The operator harness (kmock emulator + kopf in a thread) for test_operator_secrets (O14),
# used as is from the operator integration tests.
from tests.integration.operator.conftest import (  # noqa: F401 - fixtures, by name
    cluster,
    emulator,
    operator,
    start_operator,
)

from .storage import Moto, moto_s3

OpenApp = Callable[..., AbstractAsyncContextManager[InProcess]]


@pytest.fixture
def open_app(tmp_path: Path) -> OpenApp:
    """``async with open_app(name, {version: model_bytes}, **settings) as served``."""
    return functools.partial(open_in_process, tmp_path)


@pytest.fixture
def moto() -> Iterator[Moto]:
    """moto's S3 on 127.0.0.1 with bucket ``models`` (``storage.moto_s3``)."""
    with moto_s3() as server:
        yield server


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS or MODELFLEET settings from the machine leak into a test (or its servers)."""
    isolate_aws(monkeypatch, tmp_path)
