"""schemathesis hooks for test_openapi_schemathesis.py (loaded through $SCHEMATHESIS_HOOKS).

The runtime's OpenAPI document states every rule of an inference body that JSON Schema can
state; one it cannot: ``data`` holds product(shape) elements (a count that depends on another
field's values). ``map_case`` applies that rule to the bodies of positive cases (those
schemathesis means to be valid), so that schema-valid ones are valid requests. It only ever
adds: it sets the first dimension to fit the data and repeats data elements up to a whole row.
Negative cases are left as generated.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import schemathesis

Case = schemathesis.Case[Any]


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: Case) -> Case:  # noqa: ARG001
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    body: Any = copy.deepcopy(case.body)  # generated cases may share parts: change a copy
    if positive and isinstance(body, dict) and isinstance(body.get("inputs"), list):
        for item in body["inputs"]:
            if isinstance(item, dict):
                _fit_shape_to_data(item)
        case.body = body
    return case


def _fit_shape_to_data(item: dict[str, Any]) -> None:
    shape, data = item.get("shape"), item.get("data")
    if not isinstance(shape, list) or not shape or not isinstance(data, list):
        return
    if not all(type(d) is int and d >= 0 for d in shape):
        return
    row = math.prod(shape[1:])
    if row == 0:
        return
    if data and all(isinstance(r, list) for r in data):  # nested: one entry per row
        shape[0] = len(data)
        return
    rows = math.ceil(len(data) / row)
    data.extend(itertools.islice(itertools.cycle(list(data)), rows * row - len(data)))
    shape[0] = rows
