"""JSON Schemas of the inference request bodies one model version accepts, for the OpenAPI
document (``openapi.py`` puts them in place of the protocol's generic bodies once a version is
loaded).

They state what ``codec.py`` and ``signature.check_inputs`` check: the inputs by name (each
once), their datatypes, the static dimensions of their shapes, element types and ranges, and
the output names. One rule is beyond JSON Schema and is said in words only: ``data`` holds
product(shape) elements (flat, or nested row-major).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelfleet_runtime.protocol import DATATYPES, TensorSpec

Schema = dict[str, Any]

COUNT_RULE = "data holds product(shape) elements, flat or nested row-major"

_FLOAT_OVERFLOW = {"FP16": 65520.0, "FP32": float(2**128 - 2**103)}
"""The smallest magnitudes that round to infinity in the datatype (the server refuses them)."""
_OBJECT_OR_NULL: Schema = {"type": ["object", "null"]}


def element(datatype: str) -> Schema:
    """One tensor element of ``datatype`` in JSON."""
    if datatype == "BOOL":
        return {"type": "boolean"}
    if datatype == "BYTES":
        return {"type": "string"}
    dtype = DATATYPES[datatype]
    # true and false stand for 1 and 0 in number tensors (elements.cast_values).
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return {"type": ["integer", "boolean"], "minimum": int(info.min), "maximum": int(info.max)}
    limit = _FLOAT_OVERFLOW.get(datatype)
    if limit is None:
        return {"type": ["number", "boolean"]}
    return {"type": ["number", "boolean"], "exclusiveMinimum": -limit, "exclusiveMaximum": limit}


def _dimension(size: int | None) -> Schema:
    return {"type": "integer", "minimum": 0} if size is None else {"const": size}


def _nested(spec: TensorSpec) -> Schema:
    """``data`` nested as the shape is: static dimensions fixed, dynamic ones free (a dynamic
    dimension inside another could make rows of different lengths, which no shape fits: only
    the first may be dynamic where this is used)."""
    schema = element(spec.datatype)
    for size in reversed(spec.shape):
        schema = {"type": "array", "items": schema}
        if size is not None:
            schema |= {"minItems": size, "maxItems": size}
    return schema


def v2_input(spec: TensorSpec) -> Schema:
    flat = {"type": "array", "items": element(spec.datatype)}
    data = {"anyOf": [flat, _nested(spec)]} if _nestable(spec) else flat
    rank = len(spec.shape)
    return {
        "type": "object",
        "description": f"Input '{spec.name}': {COUNT_RULE}.",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"const": spec.name},
            "datatype": {"const": spec.datatype},
            "shape": {
                "type": "array",
                "prefixItems": [_dimension(size) for size in spec.shape],
                "minItems": rank,
                "maxItems": rank,
            },
            "data": data,
            # JSON data only: binary_data_size belongs to the binary extension's bodies.
            "parameters": {
                "type": ["object", "null"],
                "properties": {"binary_data_size": {"type": "null"}},
            },
        },
    }


def v2_request(inputs: list[TensorSpec], outputs: list[str]) -> Schema:
    """The Open Inference Protocol body for this signature (JSON data)."""
    each_once = [
        {"contains": {"properties": {"name": {"const": s.name}}}, "maxContains": 1} for s in inputs
    ]
    wanted = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"enum": outputs}, "parameters": _OBJECT_OR_NULL},
    }
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "parameters": _OBJECT_OR_NULL,
            "inputs": {
                "type": "array",
                "items": {"oneOf": [v2_input(spec) for spec in inputs]},
                "minItems": len(inputs),
                "maxItems": len(inputs),
                **({"allOf": each_once} if len(inputs) > 1 else {}),
            },
            "outputs": {"type": ["array", "null"], "items": wanted},
        },
    }


def _nestable(spec: TensorSpec) -> bool:
    return len(spec.shape) > 1 and None not in spec.shape[1:]


def v1_request(inputs: list[TensorSpec]) -> Schema | None:
    """V1 ``:predict`` for one batched input whose other dimensions are static (None for
    other signatures: the protocol's generic schema stays): ``instances`` (rows) or
    ``inputs`` (the input's values, or an object naming it)."""
    if len(inputs) != 1 or not inputs[0].shape or not _nestable(inputs[0]):
        return None
    spec = inputs[0]
    rows = _nested(spec) | ({"minItems": 1} if spec.shape[0] is None else {})
    column = {
        "type": "object",
        "required": [spec.name],
        "properties": {spec.name: rows},
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "oneOf": [
            {"required": ["instances"], "not": {"required": ["inputs"]}},
            {"required": ["inputs"], "not": {"required": ["instances"]}},
        ],
        "properties": {"instances": rows, "inputs": {"anyOf": [rows, column]}},
    }
