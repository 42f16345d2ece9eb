"""Kubernetes resource quantities (``500m``, ``1Gi``, ``1e3``, ``2``), parsed once for both sides.

The operator's ``converge.py`` compares a rendered quantity with the one the API server stores
(``1024Mi`` and ``1Gi`` are one value); the runtime's ``config.py`` reads ``cache_size_limit``
the way a pod's manifest writes it. Standard library only: the operator's image installs this
package without the runtime's heavier dependencies.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_MULTIPLIERS = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{
        s: Decimal(10) ** e
        for s, e in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)
    },
    "": Decimal(1),
}
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<suffix>[KMGTPE]i|[numkMGTPE])|[eE](?P<exponent>[+-]?\d+))?"
)


def quantity(value: Any) -> Decimal | None:
    """The value of a Kubernetes quantity (``500m``, ``1Gi``, ``1e3``, ``2``), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None:
        return None
    try:
        number = Decimal(match["number"])
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        return None
    if match["exponent"] is not None:
        return number.scaleb(int(match["exponent"]))
    return number * _MULTIPLIERS[match["suffix"] or ""]


def byte_count(value: Any) -> int:
    """A size in bytes written as a quantity (``10Gi``, ``500Mi``, ``2G``, ``1048576``).
    ValueError when it is not a whole, non-negative number of bytes."""
    parsed = quantity(value)
    if parsed is None or parsed < 0 or parsed != parsed.to_integral_value():
        raise ValueError(
            f"{value!r} is not a size in bytes (a whole number, or a quantity like 10Gi or 500Mi)"
        )
    return int(parsed)
