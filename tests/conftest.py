"""Suite-wide settings for every test, and for the server processes tests start; and the
guard that fails a test which leaves asyncio tasks behind."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from tests.helpers.environment import SUITE_GRPC_PORT

LIBRARY_TASKS: frozenset[str] = frozenset()
"""Coroutines (``__qualname__``) of libraries' own tasks that outlive a test by design, each
with the reason; the guard lets only these pass."""


@pytest.fixture(autouse=True, scope="session")
def grpc_on_free_ports() -> Iterator[None]:
    """The runtime's gRPC server defaults to port 8081; servers started by tests (in process
    and as child processes, which inherit this environment) take a free port instead, so
    that several can run at once."""
    before = os.environ.get(SUITE_GRPC_PORT)
    os.environ[SUITE_GRPC_PORT] = "0"
    yield
    if before is None:
        del os.environ[SUITE_GRPC_PORT]
    else:
        os.environ[SUITE_GRPC_PORT] = before


@pytest.fixture
def _function_scoped_runner(_function_scoped_runner: asyncio.Runner) -> Iterator[asyncio.Runner]:
    """Fail a test that leaves asyncio tasks running, naming them.

    This overrides pytest-asyncio's per-test runner fixture by its name and wraps it (the
    argument is pytest-asyncio's own): every fixture of an async test that uses the loop is set
    up after the runner, so it is torn down before this check runs, and the check runs before
    the runner cancels whatever is left (which it does silently). A task still pending here was
    started by the test or a fixture and never awaited or cancelled. ``test_task_guard.py``
    proves the override is in force.
    """
    yield _function_scoped_runner
    loop = _function_scoped_runner.get_loop()
    leaked = [
        task
        for task in asyncio.all_tasks(loop)
        if not task.done() and _coroutine_name(task) not in LIBRARY_TASKS
    ]
    if leaked:
        names = sorted(f"{_coroutine_name(t)} ({t.get_name()})" for t in leaked)
        pytest.fail(f"the test left {len(leaked)} asyncio task(s) running: {', '.join(names)}")


def _coroutine_name(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    return str(getattr(coro, "__qualname__", type(coro).__qualname__))
