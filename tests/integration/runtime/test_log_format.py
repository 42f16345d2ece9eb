"""``modelfleet serve`` logs for who reads them: human-readable lines on a terminal (a real
pseudo-terminal from ``pty``), JSON lines into a pipe (a pod's stderr, a log shipper), and
an explicit ``--log-format`` wins over either."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.runtime import free_port, stop_process

LOADED = "version 1 loaded and serving"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO [\w.]+: ")


@contextmanager
def serve(tmp: Path, stderr: int, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``modelfleet serve`` (the bundled iris) with stderr to ``stderr``; stopped after."""
    env = {k: v for k, v in os.environ.items() if k != "MODELFLEET_LOG_FORMAT"}
    env |= {"MODELFLEET_MODEL_DIR": str(tmp / "models"), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "modelfleet_runtime.cli", "serve"]
    command += ["--port", str(free_port()), "--grpc-port", "0", *args]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
    )
    try:
        yield process
    finally:
        stop_process(process)


def read_until(fd: int, marker: str, timeout: float = 60) -> str:
    """What ``fd`` gives until ``marker`` has appeared (or the writer is gone)."""
    deadline = time.monotonic() + timeout
    seen = b""
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} within {timeout} s:\n{seen.decode(errors='replace')}"
        ready, _, _ = select.select([fd], [], [], left)
        chunk = os.read(fd, 65536) if ready else b""
        if ready and not chunk:
            break  # the server exited: the assertion below shows what it said
        seen += chunk
    text = seen.decode(errors="replace")
    assert marker in text, text
    return text


def on_terminal(tmp: Path, *args: str) -> list[str]:
    """The non-empty lines ``modelfleet serve ARGS`` writes to a pseudo-terminal up to the
    model being loaded."""
    primary, secondary = pty.openpty()
    try:
        with serve(tmp, secondary, *args):
            os.close(secondary)
            secondary = -1
            output = read_until(primary, LOADED)
    finally:
        for fd in (primary, secondary):
            if fd >= 0:
                os.close(fd)
    return [line for line in output.replace("\r\n", "\n").splitlines() if line.strip()]


def test_a_terminal_gets_readable_lines(tmp_path: Path) -> None:
    lines = on_terminal(tmp_path)
    assert not any(line.lstrip().startswith("{") for line in lines), lines
    assert any(TEXT_LINE.match(line) and LOADED in line for line in lines), lines


def test_a_pipe_gets_json_lines(tmp_path: Path) -> None:
    with serve(tmp_path, subprocess.PIPE) as process:
        assert process.stderr is not None
        output = read_until(process.stderr.fileno(), LOADED)
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert any(r["message"] == LOADED and r["model"] == "iris" for r in records), output


def test_an_explicit_format_wins_over_the_terminal(tmp_path: Path) -> None:
    lines = on_terminal(tmp_path, "--log-format", "json")
    assert lines and all(json.loads(line)["model"] == "iris" for line in lines), lines
