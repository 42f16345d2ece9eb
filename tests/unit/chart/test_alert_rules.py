"""The chart's alert rules (templates/prometheusrule.yaml), checked by Prometheus' own promtool.

The PrometheusRule is rendered with Helm's real engine and its ``spec`` written out as a rules
file; ``promtool check rules`` validates it and ``promtool test rules`` runs the unit tests in
``alerts/*.test.yaml`` on it: input series named as the runtime and the operator export them,
an alert firing when it should and silent when it should not. Every alert has a firing and a
silent case, every metric a rule reads is one the code registers (so renaming a metric in
``metrics.py`` fails here), and every ``runbook_url`` names a section of docs/runbooks.md.
promtool is Debian's ``prometheus`` package (``scripts/test`` installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart.helpers import CHART_DIR, REPO, Manifest, exported_series, render

TESTS = sorted((Path(__file__).parent / "alerts").glob("*.test.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"


def _rule(values: dict[str, Any] | None = None) -> Manifest:
    (rule,) = render({"prometheusRule": {"enabled": True, **(values or {})}}).of_kind(
        "PrometheusRule"
    )
    return rule


RULE = _rule()
ALERTS: list[Manifest] = [r for g in RULE["spec"]["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/test installs Debian's prometheus package"
    return path


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding rules.yaml, the rendered rules, where each test file is copied."""
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": RULE["spec"]["groups"]}))
    yield folder


def _promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_checks_the_rules(promtool: str, rules_dir: Path) -> None:
    done = _promtool(promtool, "check", "rules", "rules.yaml", cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


@pytest.mark.parametrize("test_file", TESTS, ids=[t.name for t in TESTS])
def test_promtool_unit_tests_pass(promtool: str, rules_dir: Path, test_file: Path) -> None:
    shutil.copy(test_file, rules_dir / test_file.name)
    done = _promtool(promtool, "test", "rules", test_file.name, cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr


def _cases() -> dict[str, set[bool]]:
    """Per alert name, whether the test files expect it firing (True) and silent (False)."""
    seen: dict[str, set[bool]] = {}
    for path in TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                seen.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    return seen


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    names = {alert["alert"] for alert in ALERTS}
    assert len(names) == len(ALERTS) == 10
    cases = _cases()
    assert set(cases) == names
    assert {name: cases[name] for name in names} == dict.fromkeys(names, {True, False})


def test_rules_read_only_series_the_code_exports() -> None:
    used = {m for a in ALERTS for m in re.findall(r"\bmodelfleet_\w+", a["expr"])}
    assert used and used <= exported_series().keys(), used - exported_series().keys()


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the Markdown headings: lower case, punctuation dropped, - for spaces."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_alert_links_its_runbook_section() -> None:
    anchors = _anchors(RUNBOOKS.read_text())
    base = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["prometheusRule"]
    for alert in ALERTS:
        notes = alert["annotations"]
        assert notes["summary"] and notes["description"]
        assert alert["labels"]["severity"] in ("critical", "warning")
        url, _, anchor = notes["runbook_url"].partition("#")
        assert url == base["runbookBaseUrl"] and url.endswith("/docs/runbooks.md")
        assert anchor == alert["alert"].lower() and anchor in anchors


def test_alerts_follow_their_values() -> None:
    """Thresholds, durations, severities and extra labels come from values; an alert can be
    switched off; the rule lands where asked, with the labels a Prometheus selects by."""
    rule = _rule(
        {
            "namespace": "monitoring",
            "labels": {"release": "prometheus"},
            "additionalRuleLabels": {"team": "ml"},
            "alerts": {
                "errorRatio": {"threshold": 0.2, "window": "10m", "for": "2m"},
                "latencyP99": {"enabled": False},
                "invalidSpec": {"severity": "critical"},
            },
        }
    )
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "ModelFleetLatencyP99High" not in alerts and len(alerts) == 9
    errors = alerts["ModelFleetErrorRatioHigh"]
    assert errors["for"] == "2m" and "[10m]" in errors["expr"] and "> 0.2" in errors["expr"]
    assert errors["labels"] == {"severity": "critical", "team": "ml"}
    assert alerts["ModelFleetInvalidSpec"]["labels"]["severity"] == "critical"


def test_off_by_default() -> None:
    assert render().of_kind("PrometheusRule") == []
