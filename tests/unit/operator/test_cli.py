"""``modelfleet render`` and ``modelfleet crd``: offline, exactly what the operator applies."""

from __future__ import annotations

import pytest
import yaml

from modelfleet_operator.cli import crd_command, render_command
from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import parse
from modelfleet_operator.render import render
from tests.unit.operator.helpers import CRD_FILE, EXAMPLES, INVALID, load


def test_render_prints_what_the_operator_applies(
    capsys: pytest.CaptureFixture[str], config: OperatorConfig
) -> None:
    path = EXAMPLES / "canary.yaml"
    assert render_command(["-f", str(path)]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert printed == render(parse(load(path)), config)
    assert all("ownerReferences" not in o["metadata"] for o in printed)


def test_render_fills_namespace(capsys: pytest.CaptureFixture[str], config: OperatorConfig) -> None:
    assert config.gateway_api is None  # offline: no API server to ask, so no HTTPRoute
    assert render_command(["-f", str(EXAMPLES / "kserve-onnx-sample.yaml"), "-n", "team"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {o["metadata"]["namespace"] for o in printed} == {"team"}


def test_render_invalid_spec_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert render_command(["-f", str(INVALID / "min-above-max.yaml")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "InvalidSpec" in captured.err and "minReplicas (4)" in captured.err


def test_crd_prints_the_committed_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert crd_command([]) == 0
    assert capsys.readouterr().out == CRD_FILE.read_text()
