"""Every rendered pod template passes Pod Security "restricted", plus a read-only root
filesystem and requests and limits (RELIABILITY.md O12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.parse import parse
from modelfleet_operator.render import render
from tests.unit.operator.helpers import load, pod_templates, restricted_violations, valid_examples


@pytest.mark.parametrize("example", valid_examples(), ids=lambda p: p.stem)
def test_rendered_pods_are_restricted(example: Path, config: OperatorConfig) -> None:
    templates = list(pod_templates(render(parse(load(example)), config)))
    assert templates
    for name, pod in templates:
        assert restricted_violations(pod) == [], name


def test_checker_catches_violations() -> None:
    pod = {
        "hostNetwork": True,
        "securityContext": {"runAsUser": 0},
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [
            {
                "name": "c",
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
                "ports": [{"containerPort": 80, "hostPort": 80}],
            }
        ],
    }
    found = " | ".join(restricted_violations(pod))
    for part in (
        "hostNetwork",
        "hostPath",
        "seccomp",
        "runAsUser 0",
        "allowPrivilegeEscalation",
        "drop lacks ALL",
        "capabilities added",
        "hostPort",
        "root filesystem",
        "resources",
    ):
        assert part in found
