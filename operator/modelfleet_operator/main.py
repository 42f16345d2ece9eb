"""``modelfleet operator``: read the settings, then run kopf with our handlers.

Called by ``cli.operator_command``. Every option is a field of ``config.OperatorConfig``, read
from the command line over the environment (``MODELFLEET_OPERATOR_<NAME>``) over the defaults
by pydantic-settings, as ``modelfleet serve`` reads the runtime's; ``--help`` lists them. The
settings and a fresh kopf registry are built here, at start-up, never at import time. With
``--peering`` several replicas can run: kopf's peering keeps one active (``peering.py``).
Logging is configured from the settings (``log_level``, ``log_format``) through the runtime's
``logs.configure``; ``--liveness`` starts the operator's one HTTP port (health and
``/metrics``, see ``metrics.py``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import kopf
from pydantic import ValidationError

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.handlers import METRICS_KEY, register
from modelfleet_operator.metrics import OperatorMetrics
from modelfleet_operator.peering import peering_of
from modelfleet_runtime import logs
from modelfleet_runtime.command_line import from_command_line

SHORTCUTS: dict[str, str | list[str]] = {
    "namespaces": ["namespace", "n"],
    "all-namespaces": "A",
    "resync-seconds": "resync",
}
"""Other spellings of some flags (kubectl's ``--namespace``/``-n``/``-A``)."""


def parse_settings(argv: Sequence[str]) -> OperatorConfig:
    """Settings from ``argv`` over the environment over the defaults (exits on ``--help``
    and on unknown options, as argparse does)."""
    return from_command_line(OperatorConfig, "modelfleet operator", argv, SHORTCUTS)


async def run(config: OperatorConfig) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM are kopf's to handle)."""
    registry = kopf.OperatorRegistry()
    register(registry, config)
    memo = kopf.Memo()
    memo[METRICS_KEY] = OperatorMetrics()
    namespaces = tuple(config.namespaces)
    peering = peering_of(config)
    settings = kopf.OperatorSettings()
    settings.peering.lifetime = config.peering_lifetime  # before kopf's peering task starts
    await kopf.operator(
        settings=settings,
        registry=registry,
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering.name if peering is not None else None,
        priority=peering.priority if peering is not None else 0,
        memo=memo,  # no kopf liveness server: ours serves health and metrics on one port
    )


def main(argv: Sequence[str]) -> int:
    """Entry point for ``modelfleet operator``; returns the process exit code."""
    try:
        config = parse_settings(argv)
    except ValidationError as exc:
        sys.stderr.write(f"modelfleet operator: invalid settings:\n{exc}\n")
        return 2
    logs.configure(config.log_level, config.log_format)
    asyncio.run(run(config))
    return 0
