"""The seam between the clients and the two wire protocols.

A ``Call`` is one request, built without I/O by a ``Calls`` object (``rest.RestCalls`` for
HTTP/REST, ``rpc.RpcCalls`` for gRPC), together with the function that turns the answer into
a result or an ``InferenceServerError``. A transport (sync or async, one per wire protocol)
sends it, retrying by ``retry.Backoff``. So ``Client`` and ``AsyncClient`` differ only in
``await``, and each protocol's encoding is written once for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

T = TypeVar("T")
Arrays = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request: ``request`` is the transport's own (an HTTP method, path, body and
    headers, or a gRPC method and message); ``parse`` reads the answer and raises on an
    error answer."""

    request: Any
    parse: Callable[[Any], T]


class Calls(Protocol):
    """Builds the protocol's requests (no I/O)."""

    def infer(
        self,
        model: str,
        version: str | None,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str] | None,
    ) -> Call[Arrays]: ...

    def ready(self, model: str | None, version: str | None) -> Call[bool]: ...

    def metadata(self, model: str, version: str | None) -> Call[dict[str, Any]]: ...

    def server_metadata(self) -> Call[dict[str, Any]]: ...

    def models(self) -> Call[list[dict[str, Any]]]: ...


class Transport(Protocol):
    def run(self, call: Call[T], *, retry: bool = True) -> T: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def run(self, call: Call[T], *, retry: bool = True) -> T: ...

    async def aclose(self) -> None: ...
