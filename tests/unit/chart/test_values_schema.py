"""values.schema.json rejects typos and nonsense before anything renders, through Helm's own
schema validation; and it stays in step with values.yaml and the operator's settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from helm_python import Chart, HelmError

from modelfleet_operator import config as operator_config
from tests.unit.chart.helpers import CHART_DIR, render

SCHEMA: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())

BAD_VALUES = {
    "top-level typo": {"replica": 2},
    "nested typo": {"image": {"digets": "sha256:" + "0" * 64}},
    "runtime typo": {"runtime": {"defualts": {"log_level": "DEBUG"}}},
    "deep typo": {"metrics": {"serviceMonitor": {"enable": True}}},
    "operator setting typo": {"operator": {"config": {"gateway_apis": True}}},
    "bad log level": {"operator": {"logLevel": "verbose"}},
    "bad digest": {"image": {"digest": "latest"}},
    "zero replicas": {"replicas": 0},
    "namespaced without namespaces": {"watch": {"clusterWide": False}},
    "bad namespace name": {"watch": {"clusterWide": False, "namespaces": ["ML_Prod"]}},
    "non-string runtime default": {"runtime": {"defaults": {"max_batch_size": 8}}},
    "namespaces are the chart's": {"operator": {"config": {"namespaces": ["ml"]}}},
    "zero resync": {"operator": {"config": {"resync_seconds": 0}}},
    "unreadable server version": {"operator": {"config": {"server_version": "latest"}}},
    "alert typo": {"prometheusRule": {"alerts": {"errorRate": {"threshold": 0.1}}}},
    "alert ratio above 1": {"prometheusRule": {"alerts": {"errorRatio": {"threshold": 5}}}},
    "alert duration without unit": {"prometheusRule": {"alerts": {"invalidSpec": {"for": "5"}}}},
    "runbook not a URL": {"prometheusRule": {"runbookBaseUrl": "docs/runbooks.md"}},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_rejects(values: dict[str, Any]) -> None:
    with pytest.raises(HelmError):
        Chart.load(CHART_DIR).validate_schema(values)
    with pytest.raises(HelmError):
        render(values)


def test_schema_accepts_the_defaults() -> None:
    Chart.load(CHART_DIR).validate_schema({})


def _keys(node: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Every values.yaml key path that the schema does not describe."""
    missing: list[str] = []
    props = schema.get("properties", {})
    for key, value in node.items():
        if key not in props:
            missing.append(prefix + key)
        elif isinstance(value, dict) and props[key].get("additionalProperties") is False:
            missing += _keys(value, props[key], f"{prefix}{key}.")
    return missing


def test_every_values_key_is_in_the_schema_and_typo_proof() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert _keys(values, SCHEMA) == []
    assert SCHEMA["additionalProperties"] is False


def _documented(lines: list[str], i: int) -> bool:
    """A key is documented by a comment right above it or above one of its parent keys."""
    while True:
        if i > 0 and lines[i - 1].lstrip().startswith("#"):
            return True
        indent = len(lines[i]) - len(lines[i].lstrip())
        parents = [
            j
            for j in range(i)
            if lines[j].strip()
            and not lines[j].lstrip().startswith("#")
            and len(lines[j]) - len(lines[j].lstrip()) < indent
        ]
        if not parents:
            return False
        i = parents[-1]


def test_every_values_key_is_commented() -> None:
    """values.yaml is the chart's documentation: every key has a comment, its own or its
    section's."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    keys = [
        i
        for i, line in enumerate(lines)
        if line.strip() and not line.lstrip().startswith(("#", "-")) and ":" in line
    ]
    assert keys
    undocumented = [lines[i].strip() for i in keys if not _documented(lines, i)]
    assert undocumented == []


def test_operator_settings_in_the_schema_exist_in_the_operator() -> None:
    """operator.config keys become MODELFLEET_OPERATOR_<KEY>: each must be a real setting."""
    keys = set(SCHEMA["properties"]["operator"]["properties"]["config"]["properties"])
    assert keys <= set(operator_config.OperatorConfig.model_fields)
