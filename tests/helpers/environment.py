"""A clean process environment for tests that build storage clients or start real servers;
called by the autouse fixtures of tests/integration/storage and tests/reliability."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SUITE_GRPC_PORT = "MODELFLEET_GRPC_PORT"


def isolate_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Drop every AWS_*, MODELFLEET_* and GOOGLE_APPLICATION_CREDENTIALS variable, then set
    test credentials and point the AWS config and credentials files at paths under
    ``tmp_path`` that do not exist, so nothing from the machine can leak in. The suite's own
    MODELFLEET_GRPC_PORT=0 (tests/conftest.py) stays: without it every server started here
    took port 8081 and failed to start beside any other (another test run's, a bench's)."""
    for name in list(os.environ):
        if name == SUITE_GRPC_PORT:
            continue
        if name.startswith(("AWS_", "MODELFLEET_")) or name == "GOOGLE_APPLICATION_CREDENTIALS":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
