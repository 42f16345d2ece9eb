"""A batch's rows: which requests may share a batch, and how their tensors join and part.

``batching.DynamicBatcher`` calls ``batch_key`` on every ``submit`` (requests with equal keys
queue together), ``concat_rows`` to build a batch's inputs and ``split_rows`` to hand every
caller exactly its own rows of each output. Requests share a batch only when their inputs have
the same names, dtypes and non-batch dimensions; their tensors are concatenated along axis 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from modelfleet_runtime.protocol import Arrays

# A key is ((name, dtype, non-batch shape), ...) for batchable requests, or an int for one that
# must run alone (unique per request, so nothing else ever joins it).
BatchKey: TypeAlias = tuple[tuple[str, str, tuple[int, ...]], ...] | int


class BatchingError(Exception):
    """Base of the batcher's own errors (this module's and ``batching.py``'s)."""


class UnsplittableOutputError(BatchingError):
    """The model answered a batch with an output whose first dimension is not the batch."""


class _Request(Protocol):
    """A queued request as far as its rows go (``batching._Pending``)."""

    inputs: Arrays


def batch_key(
    inputs: Mapping[str, npt.NDArray[Any]], max_batch_size: int, solo_ids: Iterator[int]
) -> tuple[BatchKey, int]:
    """``inputs``' key and row count. A request with no common batch dimension, or with more
    than ``max_batch_size`` rows, gets the next of ``solo_ids``: it runs alone."""
    rows = -1
    for array in inputs.values():
        if array.ndim == 0 or (rows >= 0 and array.shape[0] != rows):
            return next(solo_ids), 0  # no common batch dimension: runs alone
        rows = array.shape[0]
    if rows < 0 or rows > max_batch_size:
        return next(solo_ids), max(rows, 0)
    key = tuple((name, inputs[name].dtype.str, inputs[name].shape[1:]) for name in sorted(inputs))
    return key, rows


def concat_rows(batch: Sequence[_Request]) -> Arrays:
    """The batch's inputs, one array per name, the requests' rows one after another."""
    return {name: np.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}


def split_rows(outputs: Arrays, rows: list[int]) -> list[Arrays]:
    """Each request's own rows of every output, in batch order; ``rows``: each one's count."""
    total = sum(rows)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise UnsplittableOutputError(
                f"output '{name}' has shape {list(array.shape)}: cannot split a batch of "
                f"{total} rows; serve this model with batching off"
            )
    results: list[Arrays] = []
    start = 0
    for count in rows:
        stop = start + count
        results.append({name: array[start:stop] for name, array in outputs.items()})
        start = stop
    return results
