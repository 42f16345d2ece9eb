"""Open Inference Protocol datatypes and tensor bytes: numpy arrays <-> raw little-endian
buffers (the binary tensor extension over HTTP, ``raw_*_contents`` over gRPC).

One copy for both ends of the wire: the client encodes its requests and decodes answers with
these, and the runtime (``modelfleet_runtime.codec`` and ``grpc_api``) decodes requests and
encodes answers with the same functions, wrapping their ``ValueError`` into its 400 answers.
What differs between the two sides stays on its side: the runtime hands BYTES to models as
``str`` and checks sizes against its body limit before allocating; the client returns BYTES as
``bytes`` (what was sent, undecoded) and trusts the server's sizes only as far as numpy does.
JSON tensor data, which each side reads with a different parser, is not here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
"""Open Inference Protocol datatype -> numpy dtype. BYTES are numpy object arrays."""

NUMPY_TYPES: dict[np.dtype[Any], str] = {dtype: name for name, dtype in DATATYPES.items()}

GRPC_CONTENTS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The gRPC ``InferTensorContents`` field of each datatype (FP16 has none: it travels raw)."""

_LENGTH = struct.Struct("<I")


def datatype_of(array: np.ndarray[Any, Any]) -> str:
    """The protocol datatype of ``array``: object, unicode and bytes arrays are BYTES; a dtype
    the protocol has no name for (complex, datetime, ...) raises ValueError."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    found = NUMPY_TYPES.get(array.dtype) or NUMPY_TYPES.get(array.dtype.newbyteorder("="))
    if found is None:
        raise ValueError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")
    return found


def to_bytes(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    """``array``'s elements as the protocol's raw bytes: little-endian in C order, or for BYTES
    each element as a 4-byte little-endian length then its bytes (str elements as UTF-8)."""
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return pack_bytes(array.reshape(-1))


def as_buffer(array: np.ndarray[Any, Any], datatype: str) -> bytes | memoryview:
    """``to_bytes`` without the copy where ``array`` is already C-ordered and little-endian:
    a view of its memory (valid while ``array`` is unchanged)."""
    if datatype == "BYTES":
        return pack_bytes(array.reshape(-1))
    contiguous = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    view: Any = contiguous.reshape(-1)  # numpy's stubs do not declare the buffer protocol
    return memoryview(view).cast("B")


def pack_bytes(values: Iterable[Any]) -> bytes:
    """BYTES elements, each a 4-byte little-endian length then its bytes."""
    parts = []
    for value in values:
        raw = value if isinstance(value, bytes) else str(value).encode()
        parts += [_LENGTH.pack(len(raw)), raw]
    return b"".join(parts)


def unpack_bytes(chunk: bytes | memoryview) -> list[bytes]:
    """The elements of a BYTES buffer; ValueError if one is cut short."""
    values: list[bytes] = []
    offset, end = 0, len(chunk)
    while offset < end:
        if offset + 4 > end:
            raise ValueError("truncated BYTES element")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 4
        if offset + length > end:
            raise ValueError("truncated BYTES element")
        values.append(bytes(chunk[offset : offset + length]))
        offset += length
    return values


def from_bytes(chunk: bytes | memoryview, datatype: str, count: int) -> np.ndarray[Any, Any]:
    """A flat array of ``count`` elements from raw bytes, without copying them (the result is
    read-only where ``chunk`` is). BYTES give an object array of ``bytes``. ValueError when
    the size does not match."""
    if datatype == "BYTES":
        values = unpack_bytes(chunk)
        if len(values) != count:
            raise ValueError(f"shape holds {count} elements but got {len(values)}")
        array = np.empty(len(values), dtype=object)
        array[:] = values  # not np.array(values): that would make a fixed-width 'S' array
        return array
    dtype = DATATYPES[datatype].newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise ValueError(
            f"binary data has {len(chunk)} bytes, "
            f"shape and {datatype} need {count * dtype.itemsize}"
        )
    return np.frombuffer(chunk, dtype=dtype)
