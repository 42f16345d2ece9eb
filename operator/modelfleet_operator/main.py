"""``modelfleet operator``: parse the command line, then run kopf with our handlers.

Called by ``cli.operator_command``. Builds the configuration (``OperatorConfig`` from the
environment) and a fresh kopf registry here, at start-up, never at import time. With
``--peering`` several replicas can run: kopf's peering keeps one active, and each replica needs
a distinct ``--priority`` (equal priorities freeze every replica, O11); without ``--priority``
one is derived from the host (pod) name. ``--peering-lifetime`` is how long a silent replica
counts as alive (kopf's ``settings.peering.lifetime``, default 60 s): a follower takes over
about that long after the active replica dies. Logging is configured from the settings
(``log_level``, ``log_format``) through the runtime's ``logs.configure``; ``--liveness`` starts
the operator's one HTTP port (health and ``/metrics``, see ``metrics.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import zlib
from collections.abc import Sequence

import kopf

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.handlers import METRICS_KEY, LiveOptions, register
from modelfleet_operator.metrics import OperatorMetrics
from modelfleet_operator.peering import Peering
from modelfleet_runtime import logs


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The ``modelfleet operator`` options."""
    parser = argparse.ArgumentParser(prog="modelfleet operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch only NS")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch all (default)")
    parser.add_argument("--peering", help="kopf peering name: run more than one replica safely")
    parser.add_argument("--priority", type=int, help="peering priority; unique per replica")
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=60,
        help="seconds a silent peer counts as alive (takeover delay); kopf's default is 60",
    )
    parser.add_argument(
        "--liveness",
        help="health endpoint, e.g. http://0.0.0.0:8080/healthz; /metrics is served on its port",
    )
    parser.add_argument("--resync", type=float, default=60.0, help="resync period, seconds")
    return parser.parse_args(list(argv))


def default_priority() -> int:
    """A stable per-pod priority, so that replicas differ without configuration."""
    return 1 + zlib.crc32(socket.gethostname().encode()) % 1_000_000


async def run(args: argparse.Namespace, config: OperatorConfig) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM are kopf's to handle)."""
    registry = kopf.OperatorRegistry()
    namespaces = tuple(args.namespace)
    priority = args.priority if args.priority is not None else default_priority()
    options = LiveOptions(
        resync_seconds=args.resync,
        namespaces=namespaces,
        endpoint=args.liveness,
        peering=Peering(args.peering, priority) if args.peering is not None else None,
    )
    register(registry, config, options)
    memo = kopf.Memo()
    memo[METRICS_KEY] = OperatorMetrics()
    settings = kopf.OperatorSettings()
    settings.peering.lifetime = args.peering_lifetime
    await kopf.operator(
        settings=settings,
        registry=registry,
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        memo=memo,  # no kopf liveness server: ours serves health and metrics on one port
    )


def main(argv: Sequence[str]) -> int:
    """Entry point for ``modelfleet operator``; returns the process exit code."""
    args = parse_args(argv)
    config = OperatorConfig()
    logs.configure(config.log_level, config.log_format)
    asyncio.run(run(args, config))
    return 0
