"""Fixtures for the operator's unit tests."""

from __future__ import annotations

import os

import pytest

from modelfleet_operator.config import OperatorConfig


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> OperatorConfig:
    """The operator's defaults, untouched by the environment of the test run."""
    for name in list(os.environ):
        if name.startswith("MODELFLEET_OPERATOR_"):
            monkeypatch.delenv(name)
    return OperatorConfig()
