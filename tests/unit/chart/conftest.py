"""Fixtures for the chart tests: one render per values file (defaults and each ci/ file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.chart.helpers import CI_VALUES, Rendered, load_values, render

VALUE_FILES: list[Path | None] = [None, *CI_VALUES]


def _id(path: Path | None) -> str:
    return "defaults" if path is None else path.stem


@pytest.fixture(scope="module", params=VALUE_FILES, ids=_id)
def values_file(request: pytest.FixtureRequest) -> Path | None:
    """None (the chart's defaults) or one of the chart's ci/ values files."""
    path: Path | None = request.param
    return path


@pytest.fixture(scope="module")
def rendered(values_file: Path | None) -> Rendered:
    """The chart rendered with ``values_file``."""
    return render(load_values(values_file))
