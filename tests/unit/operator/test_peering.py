"""kopf's pause rule as the resync loop applies it (``peering.py``); the processes are in
``tests/integration/operator/test_peering.py``."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import pytest

from modelfleet_operator import peering
from modelfleet_operator.kinds import KindRef
from modelfleet_operator.kube import Manifest
from modelfleet_operator.peering import Peering, active, outranked

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def entry(priority: int, seconds_ago: float = 1, lifetime: int = 60) -> dict[str, Any]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


@pytest.mark.parametrize(
    ("peers", "expected"),
    [
        ({"me": entry(10)}, False),
        ({"me": entry(10), "other": entry(20)}, True),
        ({"me": entry(20), "other": entry(10)}, False),
        ({"me": entry(10), "other": entry(20, seconds_ago=61)}, False),  # dead leader
        ({"me": entry(10), "other": entry(20, seconds_ago=4, lifetime=5)}, True),
        ({"me": entry(10), "twin": entry(10)}, True),  # equal priorities freeze both
        ({"me": entry(10), "twin": entry(10, seconds_ago=100)}, False),
        ({"other": {"priority": 20}}, True),  # no lastseen: kopf counts it alive now
        ({}, False),
    ],
)
def test_outranked_follows_kopfs_rule(peers: dict[str, Any], expected: bool) -> None:
    own = peers.get("me", {}).get("priority", 10)
    assert outranked(peers, own, NOW) is expected


class Peerings:
    """An applier that only answers GETs of peering objects, and records them."""

    def __init__(self, objects: Mapping[tuple[str, str], Manifest]) -> None:
        self.objects = objects
        self.gets: list[tuple[str, str, str]] = []

    async def get(self, ref: KindRef, namespace: str, name: str) -> Manifest | None:
        self.gets.append((ref.plural, namespace, name))
        return self.objects.get((namespace, name))


def live(**priorities: int) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).isoformat()
    return {"status": {k: {"priority": p, "lastseen": now} for k, p in priorities.items()}}


async def test_standalone_is_always_active() -> None:
    applier = Peerings({})
    assert await active(applier, None, ()) is True
    assert applier.gets == []


async def test_cluster_wide_reads_the_cluster_peering() -> None:
    applier = Peerings({("", "mf"): live(a=20, b=10)})
    assert await active(applier, Peering("mf", 20), ()) is True
    assert await active(applier, Peering("mf", 10), ()) is False
    assert applier.gets[0] == (peering.CLUSTER.plural, "", "mf")


async def test_namespaced_is_paused_by_any_namespace() -> None:
    applier = Peerings({("a", "mf"): live(me=10), ("b", "mf"): live(me=10, other=30)})
    assert await active(applier, Peering("mf", 10), ("a",)) is True
    assert await active(applier, Peering("mf", 10), ("a", "b")) is False
    assert {plural for plural, _, _ in applier.gets} == {peering.NAMESPACED.plural}


async def test_missing_peering_object_counts_as_paused() -> None:
    assert await active(Peerings({}), Peering("mf", 10), ()) is False
