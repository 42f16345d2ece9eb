"""docs/client.md runs as written: every Python example, and every ``modelfleet infer`` line,
against the bundled example served by a real ``modelfleet serve`` (its ports put in for the
documented 8080 and 8081), and the output the page shows is the output the command prints."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.runtime import free_port, serve_process

PAGE = Path(__file__).parents[2] / "docs" / "client.md"
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", PAGE.read_text(), re.DOTALL)
PYTHON = [code for kind, code in BLOCKS if kind == "python"]
COMMANDS = [
    line for kind, code in BLOCKS if kind == "bash" for line in code.splitlines()
    if line.startswith("modelfleet infer")
]  # fmt: skip


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("docs")
    grpc = free_port()
    with serve_process(tmp, "--grpc-port", str(grpc)) as served:
        yield {
            "127.0.0.1:8080": served.url.removeprefix("http://"),
            "127.0.0.1:8081": f"127.0.0.1:{grpc}",
        }


def _local(text: str, ports: dict[str, str]) -> str:
    for documented, real in ports.items():
        text = text.replace(documented, real)
    return text


def test_the_page_has_examples() -> None:
    assert len(PYTHON) >= 6 and len(COMMANDS) == 3


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_examples_run(code: str, ports: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _local(code, ports)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_modelfleet_infer_lines_run_and_print_what_the_page_shows(
    ports: dict[str, str], tmp_path: Path
) -> None:
    np.save(tmp_path / "features.npy", np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
    printed = []
    for line in COMMANDS:
        args = shlex.split(_local(line, ports))[1:]
        done = subprocess.run(
            [sys.executable, "-m", "modelfleet_runtime.cli", *args],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        printed.append(done.stdout)
    shown = next(code for kind, code in BLOCKS if kind == "" and code.startswith("label:"))
    assert printed[0] == shown
    assert (tmp_path / "outputs.npz").is_file()
