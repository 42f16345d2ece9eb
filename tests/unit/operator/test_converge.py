"""``converge.py``: when a live child already matches what the operator would apply."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from modelfleet_operator.converge import is_converged, is_subset, stamp
from modelfleet_runtime.quantities import quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("1", Decimal(1)),
        (2, Decimal(2)),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("1024Mi", Decimal(2**30)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("1E", Decimal(10**18)),  # exa, as Kubernetes reads it, not an exponent
        ("100n", Decimal("1e-7")),
        ("12Mb", None),
        ("", None),
        ("fast", None),
        (True, None),
        (None, None),
    ],
)
def test_quantity_reads_kubernetes_spellings(text: Any, value: Decimal | None) -> None:
    assert quantity(text) == value


def container(**resources: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": "r", "resources": resources}]}}}}


def test_canonical_quantities_from_the_api_server_are_not_drift() -> None:
    desired = container(
        limits={"cpu": "1000m", "memory": "1024Mi"}, requests={"cpu": "0.5", "memory": "512Mi"}
    )
    stored = container(
        limits={"cpu": "1", "memory": "1Gi"}, requests={"cpu": "500m", "memory": "512Mi"}
    )
    assert is_subset(desired, stored)


@pytest.mark.parametrize(
    "live",
    [
        {"cpu": "2", "memory": "1Gi"},  # a real change
        {"cpu": "1"},  # a limit removed by hand
        {"cpu": "1", "memory": "1G"},  # 10^9 is not 2^30
    ],
)
def test_changed_quantities_are_drift(live: dict[str, Any]) -> None:
    desired = container(limits={"cpu": "1000m", "memory": "1024Mi"})
    assert not is_subset(desired, container(limits=live))


def test_quantities_compare_by_value_only_where_quantities_live() -> None:
    desired = {"env": [{"name": "THREADS", "value": "1000m"}], "volume": {"sizeLimit": "1024Mi"}}
    live = {"env": [{"name": "THREADS", "value": "1000m"}], "volume": {"sizeLimit": "1Gi"}}
    assert is_subset(desired, live)
    # An env value is a string, whatever it looks like.
    assert not is_subset(desired, {**live, "env": [{"name": "THREADS", "value": "1"}]})


def test_a_field_we_dropped_is_caught_by_the_hash() -> None:
    before = stamp({"metadata": {"name": "x"}, "spec": {"a": 1, "b": 2}})
    after = stamp({"metadata": {"name": "x"}, "spec": {"a": 1}})
    assert is_converged(before, before)
    assert not is_converged(after, before)  # "a subset of live" alone would say yes
    assert not is_converged(before, None)
