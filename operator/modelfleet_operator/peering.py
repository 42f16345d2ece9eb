"""Is this replica the active one under kopf's peering? Asked by our own background work.

kopf pauses its watches, handlers and timers while another live peer outranks this replica,
but the resync loop (``scheduler.py``) is a plain task of ours: it asks before each round. The
answer comes from the peering object kopf keeps (``status``: one entry per replica, with its
priority, lifetime and when it was last seen) by kopf's own rule (``kopf._core.engines.
peering``): paused while a live peer has a higher priority, or another has the same one.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import socket
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.kinds import KindRef
from modelfleet_operator.kube import Manifest

CLUSTER = KindRef("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings")
NAMESPACED = KindRef("kopf.dev/v1", "KopfPeering", "kopfpeerings")
DEFAULT_LIFETIME = 60
"""kopf's lifetime of an entry that does not state one."""
log = logging.getLogger(__name__)


class Reader(Protocol):
    """What the check needs of an ``Applier``: one GET."""

    async def get(self, ref: KindRef, namespace: str, name: str) -> Manifest | None: ...


@dataclasses.dataclass(frozen=True)
class Peering:
    """This replica's place in kopf's peering: the peering object's name and our priority."""

    name: str
    priority: int


def default_priority() -> int:
    """A stable per-pod priority, so that replicas differ without configuration."""
    return 1 + zlib.crc32(socket.gethostname().encode()) % 1_000_000


def peering_of(config: OperatorConfig) -> Peering | None:
    """This replica's peering from the settings (priority derived when unset); None when the
    operator runs standalone."""
    if config.peering is None:
        return None
    priority = config.priority if config.priority is not None else default_priority()
    return Peering(config.peering, priority)


def alive(entry: Mapping[str, Any], now: datetime.datetime) -> bool:
    """A peer is alive until ``lastseen + lifetime``; with no ``lastseen`` kopf counts it now."""
    lastseen = entry.get("lastseen")
    if lastseen is None:
        return True
    try:
        seen = datetime.datetime.fromisoformat(str(lastseen))
    except ValueError:
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=datetime.UTC)
    lifetime = datetime.timedelta(seconds=int(entry.get("lifetime", DEFAULT_LIFETIME)))
    return seen + lifetime > now


def outranked(peers: Mapping[str, Any], priority: int, now: datetime.datetime) -> bool:
    """kopf's rule over one peering object's ``status``: a live peer of higher priority, or
    two live entries (ours and another) of the same priority, pause this replica."""
    priorities = [
        int(entry.get("priority", 0))
        for entry in peers.values()
        if isinstance(entry, Mapping) and alive(entry, now)
    ]
    return any(p > priority for p in priorities) or priorities.count(priority) > 1


async def active(applier: Reader, peering: Peering | None, namespaces: Iterable[str]) -> bool:
    """True unless a peering object says another replica leads (kopf pauses on any of them).

    Without peering (a standalone operator) the answer is always yes. A missing peering object
    counts as paused: kopf does not run without it either.
    """
    if peering is None:
        return True
    scopes = [(NAMESPACED, ns) for ns in namespaces] or [(CLUSTER, "")]
    now = datetime.datetime.now(datetime.UTC)
    for ref, namespace in scopes:
        body = await applier.get(ref, namespace, peering.name)
        if body is None:
            log.debug("No %s %r: treated as paused.", ref.kind, peering.name)
            return False
        if outranked(body.get("status") or {}, peering.priority, now):
            return False
    return True
