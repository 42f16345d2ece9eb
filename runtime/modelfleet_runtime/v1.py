"""V1 ``:predict`` (TensorFlow Serving style) bodies <-> numpy arrays, typed after the model's
inputs: ``{"instances": rows}`` or ``{"inputs": columns}`` in, ``{"predictions": ...}`` or
``{"outputs": ...}`` out. Parsing is ``codec``'s and the integer and float checks and casts
``elements``', as for the Open Inference Protocol, so both protocols refuse a body for the
same reasons. A large body for a model of one number input (an image as ``instances``) takes
``jsontensors``' lane: its numbers go from simdjson straight into numpy, the same array bit for
bit; anything that lane cannot prove, or that fails a check, is decoded here as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelfleet_runtime import jsontensors
from modelfleet_runtime.codec import MAX_JSON_DEPTH, as_object, dumps, loads
from modelfleet_runtime.elements import cast_values, exact_integers, wide_numbers
from modelfleet_runtime.errors import BadRequestError
from modelfleet_runtime.protocol import DATATYPES, TensorSpec


def decode(body: bytes, specs: Mapping[str, TensorSpec]) -> tuple[dict[str, Any], bool]:
    """Decode ``{"instances": rows}`` or ``{"inputs": columns}`` into arrays typed after the
    model's inputs. Returns the arrays and whether the request was row-shaped."""
    if len(specs) == 1:
        fast = _one_number_input(body, *next(iter(specs.items())))
        if fast is not None:
            return fast
    request = as_object(loads(body), "request body")
    if ("instances" in request) == ("inputs" in request):
        raise BadRequestError("request needs exactly one of 'instances' or 'inputs'")
    rows = "instances" in request
    payload = request["instances" if rows else "inputs"]
    if rows:
        payload = _columns(payload, specs)
    if not isinstance(payload, dict):
        if len(specs) != 1:
            raise BadRequestError(f"model has inputs {sorted(specs)}: name them in an object")
        payload = {next(iter(specs)): payload}
    arrays = {}
    for name, value in payload.items():
        spec = specs.get(name)
        if spec is None:
            raise BadRequestError(f"unexpected input '{name}'; model has {sorted(specs)}")
        arrays[name] = _v1_array(value, name, spec.datatype)
    return arrays, rows


def _one_number_input(
    body: bytes, name: str, spec: TensorSpec
) -> tuple[dict[str, Any], bool] | None:
    """``jsontensors.parse_columns``' array, checked and cast as ``_v1_array`` would; None
    sends the body to the general path, which also words any error."""
    found = jsontensors.parse_columns(body, spec.datatype, MAX_JSON_DEPTH)
    if found is None:
        return None
    key, array = found
    try:
        return {name: cast_values(array, name, spec.datatype, DATATYPES[spec.datatype])}, (
            key == "instances"
        )
    except BadRequestError:
        return None


def _columns(instances: Any, specs: Mapping[str, TensorSpec]) -> Any:
    if not isinstance(instances, list) or not instances:
        raise BadRequestError("'instances' must be a non-empty list")
    if len(specs) == 1 and not isinstance(instances[0], dict):
        return instances
    if not all(isinstance(row, dict) for row in instances):
        raise BadRequestError("each instance must be an object of input name to value")
    return {name: [row.get(name) for row in instances] for name in instances[0]}


def _v1_array(value: Any, name: str, datatype: str) -> np.ndarray[Any, Any]:
    try:
        if datatype == "BYTES":
            return np.array(value, dtype=object)
        dtype = DATATYPES[datatype]
        array = np.asarray(value)
        if dtype.kind in "iu" and array.dtype.kind in "fO":  # as _from_json does
            array = exact_integers(value, name, datatype, dtype).reshape(np.shape(value))
        elif dtype.kind == "f" and array.dtype.kind == "O":
            array = wide_numbers(value, name, datatype).reshape(np.shape(value))
        if array.dtype.kind == "O":
            raise ValueError("rows differ in length")
        return cast_values(array, name, datatype, dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequestError(f"input '{name}': data does not fit {datatype}: {exc}") from None


def encode(outputs: Mapping[str, np.ndarray[Any, Any]], rows: bool) -> bytes:
    """``{"predictions": rows}`` for row requests, ``{"outputs": columns}`` otherwise; one
    output is given bare, several by name."""
    lists = {name: _plain(array) for name, array in outputs.items()}
    if not rows:
        return dumps({"outputs": next(iter(lists.values())) if len(lists) == 1 else lists})
    if len(lists) == 1:
        return dumps({"predictions": next(iter(lists.values()))})
    count = min(len(v) for v in lists.values())
    return dumps({"predictions": [{k: v[i] for k, v in lists.items()} for i in range(count)]})


def _plain(array: np.ndarray[Any, Any]) -> list[Any]:
    if array.dtype.kind == "O":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.tolist()]
    result: list[Any] = array.tolist() if array.ndim else [array.item()]
    return result
