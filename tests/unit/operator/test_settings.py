"""``modelfleet operator``'s options: one settings model (``config.OperatorConfig``), every field
a flag and a ``MODELFLEET_OPERATOR_<NAME>`` variable, the command line over the environment,
bad input refused with a message (``main.parse_settings``, ``main.main``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from modelfleet_operator import main as operator_main
from modelfleet_operator.config import ENV_PREFIX, OperatorConfig


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_flags_and_their_kubectl_spellings() -> None:
    settings = operator_main.parse_settings(
        [
            "--namespace=ml",
            "-n",
            "staging",
            "--liveness=http://0.0.0.0:8080/healthz",
            "--peering",
            "modelfleet",
            "--priority=11",
            "--peering-lifetime",
            "7",
            "--resync",
            "5",
            "--retries=2",
            "--gateway-api",
            "true",
            "--default-resources",
            '{"requests": {"cpu": "1"}}',
        ]
    )
    assert settings.namespaces == ["ml", "staging"]
    assert settings.all_namespaces is False
    assert settings.liveness == "http://0.0.0.0:8080/healthz"
    assert (settings.peering, settings.priority, settings.peering_lifetime) == ("modelfleet", 11, 7)
    assert (settings.resync_seconds, settings.retries) == (5.0, 2)
    assert settings.gateway_api is True
    assert settings.default_resources == {"requests": {"cpu": "1"}}
    assert operator_main.parse_settings(["-A"]).all_namespaces is True
    assert operator_main.parse_settings(["--all-namespaces"]).all_namespaces is True


def test_the_environment_sets_every_option_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELFLEET_OPERATOR_NAMESPACES", '["ml"]')
    monkeypatch.setenv("MODELFLEET_OPERATOR_RESYNC_SECONDS", "30")
    monkeypatch.setenv("MODELFLEET_OPERATOR_COALESCE_SECONDS", "0.5")
    monkeypatch.setenv("MODELFLEET_OPERATOR_PEERING", "from-env")
    settings = operator_main.parse_settings(["--resync-seconds", "9"])
    assert settings.namespaces == ["ml"]
    assert settings.coalesce_seconds == 0.5
    assert settings.peering == "from-env"
    assert settings.resync_seconds == 9.0  # the command line over the environment


def test_every_setting_is_a_flag_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        operator_main.parse_settings(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "MODELFLEET_OPERATOR_<NAME>" in text
    missing = [
        name for name in OperatorConfig.model_fields if f"--{name.replace('_', '-')}" not in text
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--namespace", "ml", "--all-namespaces"], "namespaces to watch or all_namespaces"),
        (["--liveness", "0.0.0.0:8080"], "is not http://HOST:PORT/PATH"),
        (["--liveness", "http://0.0.0.0/healthz"], "is not http://HOST:PORT/PATH"),
        (["--resync-seconds", "0"], "greater than 0"),
        (["--retries", "0"], "greater than or equal to 1"),
        (["--server-version", "latest"], "is not a Kubernetes version"),
    ],
)
def test_bad_settings_exit_2_saying_what_is_wrong(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert operator_main.main(argv) == 2
    err = capsys.readouterr().err
    assert "modelfleet operator: invalid settings" in err
    assert message in err


def test_an_unknown_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        operator_main.parse_settings(["--resync-minutes", "1"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --resync-minutes" in capsys.readouterr().err


def test_ipv6_health_endpoint_is_accepted() -> None:
    assert operator_main.parse_settings(["--liveness", "http://[::]:8080/healthz"]).liveness


def test_modelfleet_operator_help_runs() -> None:
    """The installed command, as a user types it: no kopf start, no cluster needed."""
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet_runtime.cli", "operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: modelfleet operator" in result.stdout
    assert "--resync-seconds" in result.stdout and "--namespace" in result.stdout
