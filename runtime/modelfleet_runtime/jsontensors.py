"""Large JSON requests: tensor ``data`` parsed straight into numpy, without Python floats.

A 1x3x224x224 image as JSON is 150,528 numbers. ``orjson.loads`` turns each into a Python
float and ``np.asarray`` then walks them again; together they are almost all of such a
request's time. simdjson (the pysimdjson binding) parses the body once into its own tape, and
``Array.as_buffer`` copies a number array off that tape into a C buffer of doubles or int64s,
which numpy wraps without a copy. Only the small rest of the document (names, shapes,
parameters) becomes Python objects.

This module is a fast lane, never a second definition of the protocol: ``parse`` returns the
same document ``codec.loads`` would, except that each eligible ``data`` list arrives as a
``Numbers`` (the flat array numpy would have made of it), or ``None`` whenever it cannot prove
that. ``codec`` then validates exactly as before, so every check and error message stays in
one place, and ``None`` sends the body down the orjson path, which answers every malformed
body as it always has. The lane is taken only where the result is bit for bit what the orjson
path gives (``tests/unit/test_jsontensors.py`` checks that on generated bodies):

- a body of at least ``MIN_BODY`` bytes (below that, orjson is faster), without backslashes
  (string escapes, where the two parsers may differ on lone surrogates), without duplicate
  keys in the objects read (orjson keeps the last, simdjson's lookup the first);
- every input's ``data`` a rectangular array of plain numbers, for a float or integer
  datatype (BOOL, BYTES and anything else go the orjson way): simdjson reads a number the way
  orjson does (both round correctly to the nearest double), and integers become int64 as
  numpy makes them from Python ints;
- no array nested where the walk of the declared nesting did not find one: ``as_buffer``
  flattens whatever it meets, so the body's count of ``[`` must equal the arrays the document
  holds (a ``[`` inside a string makes the count larger, and the body takes the orjson path);
- for float datatypes, no all-integral array with a value past 2**53, where orjson's path
  would have cast int64 to the datatype once and this one rounds through a double first;
- nesting no deeper than ``codec.MAX_JSON_DEPTH``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import simdjson

from modelfleet_runtime.protocol import DATATYPES

MIN_BODY = 64 * 1024
"""Smallest body for the fast lane: below it a body is parsed in microseconds either way, and
the orjson path spares it the lane's fixed steps (the bracket count, the key checks)."""

_EXACT = 2.0**53  # every integer up to here is a double, exactly


@dataclass(frozen=True, slots=True)
class Numbers:
    """A ``data`` array read by simdjson: flat float64 or int64, as numpy would infer it."""

    array: np.ndarray[Any, Any]
    arrays: int  # JSON arrays it was written as (1 when flat)
    depth: int  # its nesting depth (1 when flat)
    shape: tuple[int, ...]  # the nesting's shape, as numpy would infer it


class _NotHere(Exception):
    """This body is for the orjson path."""


_DECLINED = (_NotHere, ValueError, TypeError, RuntimeError, KeyError, IndexError, RecursionError)
"""What reading a body in the lane may raise: each sends it to the orjson path."""


def _eligible(body: bytes) -> bool:
    return len(body) >= MIN_BODY and b"\\" not in body


def parse(body: bytes, max_depth: int) -> dict[str, Any] | None:
    """The request document with each ``data`` as ``Numbers``, or None for the orjson path."""
    if not _eligible(body):
        return None
    try:
        document = _parse(body)
        request, arrays, depth = _request(document)
    except _DECLINED:
        return None
    if arrays != _brackets(body) or depth > max_depth:
        return None
    return request


def parse_columns(
    body: bytes, datatype: str, max_depth: int
) -> tuple[str, np.ndarray[Any, Any]] | None:
    """A V1 ``:predict`` body for a model of one number input, ``{"instances": array}`` or
    ``{"inputs": array}`` and nothing else: the key, and the array numpy would make of the
    value (float64 or int64, shaped as its nesting), under the same rules as ``parse``; None
    for the orjson path (anything else, and an empty array, whose error that path words)."""
    if not _eligible(body):
        return None
    try:
        document = _parse(body)
        keys = _keys(document)
        if len(keys) != 1 or keys[0] not in ("instances", "inputs"):
            return None
        numbers = _numbers(document[keys[0]], datatype)
    except _DECLINED:
        return None
    if numbers.arrays != _brackets(body) or numbers.depth + 1 > max_depth or not numbers.array.size:
        return None
    return keys[0], numbers.array.reshape(numbers.shape)


REUSE_UP_TO = 8 * 1024 * 1024
"""Bodies up to this size share their thread's parser, whose buffers (a few times the largest
such body) stay allocated: allocating and page-faulting them in anew took half of a 3 MB
body's decode time. A larger body gets a parser of its own, freed with it."""
_local = threading.local()


def _parse(body: bytes) -> Any:
    if len(body) > REUSE_UP_TO:
        return simdjson.Parser().parse(body)
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    try:
        return parser.parse(body)
    except RuntimeError:  # a document of an earlier body is still alive: a new parser
        parser = _local.parser = simdjson.Parser()
        return parser.parse(body)


def _brackets(body: bytes) -> int:
    """The ``[`` in a body: numpy compares 5x faster than ``bytes.count`` counts, into the
    thread's scratch buffer when the body is one whose parser is reused too."""
    raw = np.frombuffer(body, np.uint8)
    if len(body) > REUSE_UP_TO:
        return int(np.count_nonzero(raw == ord("[")))
    scratch: np.ndarray[Any, Any] | None = getattr(_local, "scratch", None)
    if scratch is None or scratch.size < raw.size:
        scratch = _local.scratch = np.empty(raw.size, dtype=bool)
    found = np.equal(raw, ord("["), out=scratch[: raw.size])
    return int(np.count_nonzero(found))


def _request(document: Any) -> tuple[dict[str, Any], int, int]:
    top = _keys(document)
    request: dict[str, Any] = {}
    arrays, depth = 0, 1
    for key in top:
        value = document[key]
        if key == "inputs" and isinstance(value, simdjson.Array):
            request[key], n, d = _inputs(value)
        else:
            request[key] = _python(value)
            n, d = _shape_of(request[key])
        arrays, depth = arrays + n, max(depth, 1 + d)
    return request, arrays, depth


def _inputs(inputs: Any) -> tuple[list[dict[str, Any]], int, int]:
    items: list[dict[str, Any]] = []
    arrays, depth = 1, 1
    for raw in inputs:
        item: dict[str, Any] = {}
        keys = _keys(raw)
        datatype = raw["datatype"] if "datatype" in keys else None
        for key in keys:
            value = raw[key]
            if key == "data":
                item[key] = _numbers(value, datatype)
                n, d = item[key].arrays, item[key].depth
            else:
                item[key] = _python(value)
                n, d = _shape_of(item[key])
            arrays, depth = arrays + n, max(depth, 2 + d)
        items.append(item)
    return items, arrays, depth


def _keys(value: Any) -> list[str]:
    if not isinstance(value, simdjson.Object):
        raise _NotHere
    keys = list(value.keys())
    if len(set(keys)) != len(keys):
        raise _NotHere
    return keys


def _numbers(data: Any, datatype: Any) -> Numbers:
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if not isinstance(data, simdjson.Array) or dtype is None or dtype.kind not in "fiu":
        raise _NotHere
    arrays, depth, shape = _rectangle(data)
    count = math.prod(shape)
    floats = dtype.kind == "f"
    if floats:
        array = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
    else:
        array = np.frombuffer(data.as_buffer(of_type="i"), dtype=np.int64)
    if array.size != count:
        raise _NotHere
    if floats and array.size and (array.max() >= _EXACT or array.min() <= -_EXACT):
        if np.array_equal(array, np.floor(array)):
            raise _NotHere
    return Numbers(array, arrays, depth, shape)


def _rectangle(data: Any) -> tuple[int, int, tuple[int, ...]]:
    """Arrays, depth and shape of a rectangular nesting; raise for a ragged one.

    Walks every array above the innermost level (a 1x3x224x224 image: 676 of them), and
    checks each innermost one's length; what lies inside those is left to ``as_buffer`` (only
    numbers) and to the ``[`` count (no arrays)."""
    level = [data]
    arrays, depth, shape = 1, 1, []
    while True:
        width = len(level[0])
        if any(len(a) != width for a in level):
            raise _NotHere
        shape.append(width)
        if not width or not isinstance(level[0][0], simdjson.Array):
            return arrays, depth, tuple(shape)
        below = [child for a in level for child in a]
        if not all(isinstance(child, simdjson.Array) for child in below):
            raise _NotHere
        level = below
        arrays, depth = arrays + len(below), depth + 1


def _python(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _shape_of(value: Any) -> tuple[int, int]:
    """Arrays in a plain Python value, and its nesting depth (0 for a scalar)."""
    if isinstance(value, dict):
        children = [_shape_of(v) for v in value.values()]
        arrays = 0
    elif isinstance(value, list):
        children = [_shape_of(v) for v in value]
        arrays = 1
    else:
        return 0, 0
    return arrays + sum(n for n, _ in children), 1 + max((d for _, d in children), default=0)
