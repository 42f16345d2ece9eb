"""Constant-time request routing and object lookup for the emulator (see ``emulator.py``).

kmock 0.8 is built for a few dozen requests a test, and two of its paths are linear in things
that grow without bound during a benchmark (profiled with py-spy on ``bench/operator_scale.py``,
50 InferenceServices: 94% of the emulator's samples):

* ``RawHandler._handle`` decides which reaction serves a request with ``request in
  payload._source``, which walks the *whole request history* through every filter of the chain
  (an identity search): every request costs O(requests so far), a run O(requests²);
* fetches and lists scan every stored object of every kind (``__get_objs``), and a list also
  rebuilds the set of known resources from every stored object.

A real API server indexes both. :func:`sees` answers "does this view pass this request" for the
plain chains the emulator uses (root, filters, priorities) by evaluating each filter's criteria
on the one request, and falls back to kmock's own scan for anything else (slices, groups,
exclusions), so the semantics are kmock's. :class:`ObjectIndex` keeps stored objects by
resource, namespace and name.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import dsl, rendering


def sees(view: Any, request: kmock.Request) -> bool:
    """Whether ``request`` is among the requests ``view`` yields, without scanning history."""
    if isinstance(view, dsl.Root):
        return True  # every request reaching the handler is in its root's history
    if type(view) is dsl.Filter:
        return bool(view.criteria(request)) and sees(view._source, request)
    if type(view) is dsl.Priority:
        return sees(view._source, request)
    return request in view  # anything else: kmock's exact (linear) check


def ordered_payloads(root: Any) -> list[Any]:
    """``root``'s reactions in serving order (as ``RawHandler._handle`` sorts them)."""
    priorities = [tuple(-p for p in payload.priorities) for payload in root._payloads]
    width = max((len(p) for p in priorities), default=0)
    padded = [p + (0,) * (width - len(p)) for p in priorities]
    order = sorted(range(len(padded)), key=lambda index: padded[index])
    return [root._payloads[index] for index in order]


async def dispatch(root: Any, request: kmock.Request) -> aiohttp.web.StreamResponse:
    """Serve ``request`` with the first matching reaction, as kmock does, in O(reactions)."""
    for payload in ordered_payloads(root):
        if payload._disabled.is_set() or not sees(payload._source, request):
            continue
        try:
            response: aiohttp.web.StreamResponse = await payload(request)
        except rendering.ReactionMismatchError:  # mismatch or depletion
            payload._disabled.set()
            continue
        except NotImplementedError:
            continue
        return response
    raise NotImplementedError("No reaction matches the request (the emulator defines fallbacks).")


class ObjectIndex:
    """Stored objects (kmock ``Object``s, deleted ones included) by resource, namespace, name."""

    def __init__(self) -> None:
        self._by_kind: dict[Any, dict[str | None, dict[str, Any]]] = collections.defaultdict(
            lambda: collections.defaultdict(dict)
        )

    def add(self, key: tuple[Any, str | None, str], obj: Any) -> None:
        """Remember ``obj`` (stored under ``key`` in the emulator); idempotent."""
        resource, namespace, name = key
        self._by_kind[resource][namespace][name] = obj

    def get(self, resource: Any, namespace: str | None, name: str) -> Any | None:
        """The stored object, or None."""
        return self._by_kind.get(resource, {}).get(namespace, {}).get(name)

    def live(self, resource: Any, namespace: str | None) -> Iterator[Any]:
        """Objects of ``resource`` not deleted, in ``namespace`` (all namespaces if None)."""
        spaces = self._by_kind.get(resource, {})
        groups = spaces.values() if namespace is None else [spaces.get(namespace, {})]
        for group in groups:
            yield from (obj for obj in group.values() if not obj.deleted)
