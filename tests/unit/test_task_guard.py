"""The suite's guard against asyncio tasks left behind (``tests/conftest.py``) is in force: a
pytest of its own over ``task_guard_samples.py`` fails the test that leaks a task, naming it,
and passes the tests that await or cancel theirs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLES = Path(__file__).with_name("task_guard_samples.py")


def test_a_test_that_leaves_a_task_running_fails_and_names_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(SAMPLES), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 1, out
    assert "3 passed, 1 error" in out, out
    assert "ERROR tests/unit/task_guard_samples.py::test_leaves_a_task_behind" in out, out
    assert "left 1 asyncio task(s) running: sleep (forgotten-sleeper)" in out, out
