"""A Kubernetes API emulator for the operator's integration tests and benchmark: kmock, fixed.

kmock 0.8's ``KubernetesEmulator`` stores objects and streams watch events, but (TESTING.md)
gives objects no ``uid``/``resourceVersion``/``generation``, has no server-side apply, ignores
label selectors, and offers no way to fail a request *before* it changes state. This subclass
performs every write itself:

* create / merge-patch / server-side apply (creates when absent) / delete, honouring
  finalizers; ``uid``, ``creationTimestamp``, ``resourceVersion`` (one global counter) and
  ``generation`` (bumped on spec changes) are filled in; a no-op write changes nothing and
  emits no event, as on a real API server;
* ``status`` subresource patches touch only ``status``;
* ``labelSelector`` is honoured on lists (equality and existence terms);
* :class:`Fault` injection answers a matching request with an error (and ``Retry-After``), or
  holds it, before any state changes;
* container resource quantities are stored in canonical form (``1000m`` → ``1``, ``1024Mi`` →
  ``1Gi``), as the API server stores them, so "zero writes when converged" is tested against
  what a real server gives back;
* ``timeline`` records every object that appears or disappears, for ordering checks (O9);
* requests are routed, and objects fetched and listed, in constant time per object served
  (``fastpath.py``): kmock's own paths are linear in the request history and the store.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import dicts as kdicts

from modelfleet_operator.kinds import INFERENCE_SERVICE, SHORT_NAMES, SINGULAR
from modelfleet_runtime.quantities import quantity
from tests.integration.operator import fastpath

ISVC_RESOURCE = f"{INFERENCE_SERVICE.api_version}/{INFERENCE_SERVICE.plural}"
GATEWAY_GROUP = "gateway.networking.k8s.io"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclasses.dataclass
class Fault:
    """Answer the next ``count`` matching requests with ``status`` (or hold them ``delay`` s)."""

    method: str
    plural: str
    status: int = 500
    count: int = 1
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    hits: int = 0

    def matches(self, request: kmock.Request) -> bool:
        """Whether ``request`` is one this fault is for (and it is not used up)."""
        plural = request.resource.plural if request.resource is not None else None
        method = str(request.method.value if request.method else "").upper()
        return self.hits < self.count and method == self.method and plural == self.plural


def canonical_quantity(text: str) -> str:
    """The API server's spelling of a quantity: binary suffixes stay binary, the largest
    suffix that keeps the number whole (``1024Mi`` → ``1Gi``, ``0.5`` → ``500m``)."""
    value = quantity(text)
    if value is None:
        return text
    if value == 0:
        return "0"
    if "i" in text:
        for suffix, power in (("Ei", 6), ("Pi", 5), ("Ti", 4), ("Gi", 3), ("Mi", 2), ("Ki", 1)):
            whole = value / Decimal(1024) ** power
            if whole == whole.to_integral_value():
                return f"{whole.to_integral_value():f}{suffix}"
    for suffix, exponent in zip("EPTGMk mun", (18, 15, 12, 9, 6, 3, 0, -3, -6, -9), strict=True):
        whole = value.scaleb(-exponent)
        if whole == whole.to_integral_value():
            return f"{whole.to_integral_value():f}{suffix.strip()}"
    return text


def canonical_resources(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with its pod template's container resources in canonical form."""
    pod = (body.get("spec") or {}).get("template", {}).get("spec") or {}
    for container in pod.get("containers") or []:
        for part in ("limits", "requests"):
            values = (container.get("resources") or {}).get(part) or {}
            for name, text in values.items():
                values[name] = canonical_quantity(str(text))
    return body


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Equality (``k=v``, ``k==v``, ``k!=v``) and existence (``k``, ``!k``) terms."""
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            ok = labels.get(key) != value
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            ok = labels.get(key) == value
        elif term.startswith("!"):
            ok = term[1:] not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the fixes above. Use :func:`make_emulator` to get a ready one."""

    faults: list[Fault] = attrs.field(factory=list)
    timeline: list[tuple[float, str, str, str, str]] = attrs.field(factory=list)
    _rv: int = 0
    _index: fastpath.ObjectIndex = attrs.field(factory=fastpath.ObjectIndex)
    _known: tuple[int, frozenset[Any]] = (-1, frozenset())

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def writes(self, plural: str | None = None) -> list[kmock.Request]:
        """Write requests so far (optionally of one resource plural)."""
        return [
            r
            for r in list(self)
            if str(r.method.value).upper() in WRITE_METHODS
            and (plural is None or (r.resource is not None and r.resource.plural == plural))
        ]

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        fault = next((f for f in self.faults if f.matches(request)), None)
        if fault is not None:
            fault.hits += 1
            if fault.delay:
                await asyncio.sleep(fault.delay)
            else:
                return _status_response(fault.status, "Injected fault", fault.headers)
        if request.resource is not None and request.action in _WRITES:
            return await self._write(request)
        return await fastpath.dispatch(self, request)  # reads: nothing for kmock to track

    async def _write(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        data = request.data if isinstance(request.data, Mapping) else {}
        meta = data.get("metadata") or {}
        name = request.name or meta.get("name")
        key: Any = (request.resource, request.namespace or meta.get("namespace"), name)
        async with self._lock:
            obj = self._objects[key] if key in self._objects else None
            exists = obj is not None and not obj.deleted
            if request.action == kmock.action.CREATE:
                if exists:
                    return _status_response(409, f"{name} already exists", {})
                return await self._created(request, key, data)
            if not exists:
                apply = "apply-patch" in request.headers.get("Content-Type", "")
                if request.action == kmock.action.UPDATE and apply and not request.subresource:
                    return await self._created(request, key, data)
                return _status_response(404, f"{name} not found", {})
            assert obj is not None
            if request.action == kmock.action.DELETE:
                return await self._deleted(request, key, obj)
            return await self._patched(request, key, obj, data)

    async def _created(
        self, request: kmock.Request, key: Any, data: Mapping[str, Any]
    ) -> aiohttp.web.Response:
        body = canonical_resources(copy.deepcopy(dict(data)))
        meta = body.setdefault("metadata", {})
        meta.setdefault("namespace", key[1])
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=self._next_rv(),
            generation=1,
            creationTimestamp=_now(),
        )
        if key in self._objects:
            self._objects[key].create(body)
        else:
            self._objects[key] = body
        self._index.add(key, self._objects[key])
        await self._publish(request, key, "ADDED", self._objects[key].raw)
        return aiohttp.web.json_response(self._objects[key].raw, status=201)

    async def _deleted(self, request: kmock.Request, key: Any, obj: Any) -> aiohttp.web.Response:
        raw = obj.raw
        if raw["metadata"].get("finalizers"):
            if not raw["metadata"].get("deletionTimestamp"):
                obj.patch(
                    {"metadata": {"deletionTimestamp": _now(), "resourceVersion": self._next_rv()}}
                )
                await self._publish(request, key, "MODIFIED", obj.raw)
            return aiohttp.web.json_response(obj.raw)
        obj.delete()
        await self._publish(request, key, "DELETED", raw)
        return aiohttp.web.json_response(raw)

    async def _patched(
        self, request: kmock.Request, key: Any, obj: Any, data: Mapping[str, Any]
    ) -> aiohttp.web.Response:
        before = obj.raw
        patch = {"status": data.get("status")} if request.subresource == "status" else dict(data)
        after = canonical_resources(dict(kdicts.merge_patch_dict(before, patch)))
        meta = after.setdefault("metadata", {})
        for field in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            meta[field] = before["metadata"].get(field)
        if after == before:  # a no-op write: no new version, no event
            return aiohttp.web.json_response(before)
        if after.get("spec") != before.get("spec"):
            meta["generation"] = int(before["metadata"].get("generation") or 1) + 1
        meta["resourceVersion"] = self._next_rv()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            obj.delete()
            await self._publish(request, key, "DELETED", after)
            return aiohttp.web.json_response(after)
        obj.patch(_full_replacement(before, after))
        await self._publish(request, key, "MODIFIED", obj.raw)
        return aiohttp.web.json_response(obj.raw)

    async def _publish(
        self, request: kmock.Request, key: Any, kind: str, raw: Mapping[str, Any]
    ) -> None:
        assert request.resource is not None
        if kind != "MODIFIED":
            self.timeline.append(
                (time.monotonic(), kind, str(request.resource.plural), key[1], key[2])
            )
        await self._buses[request.resource].put({"type": kind, "object": copy.deepcopy(dict(raw))})

    def _declared(self) -> frozenset[Any]:
        """Declared resources, cached until more are declared (kmock rebuilds it per list)."""
        count = len(self.resources)
        if self._known[0] != count:
            self._known = (count, frozenset(kmock.KubernetesScaffold._get_resources(self)))
        return self._known[1]

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        obj = self._index.get(request.resource, request.namespace, request.name or "")
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj.raw

    async def _serve_list(self, request: kmock.Request) -> Any:
        if request.resource not in self._declared():
            raise kmock.KubernetesResourceNotFoundError()
        selector = request.params.get("labelSelector") or ""
        items = [
            obj.raw
            for obj in self._index.live(request.resource, request.namespace)
            if selector_matches(selector, obj.raw.get("metadata", {}).get("labels") or {})
        ]
        return {"metadata": {"resourceVersion": str(self._rv)}, "items": items}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        selector = request.params.get("labelSelector")
        async for event in super()._serve_watch(request):
            if selector and isinstance(event, Mapping):
                labels = event.get("object", {}).get("metadata", {}).get("labels") or {}
                if not selector_matches(selector, labels):
                    continue
            yield event


_WRITES = frozenset({kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE})


def _full_replacement(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning ``before`` into exactly ``after`` (removed keys become None)."""
    patch: dict[str, Any] = {key: None for key in before if key not in after}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            patch[key] = _full_replacement(old, value)
        else:
            patch[key] = value
    return patch


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_response(status: int, message: str, headers: Mapping[str, str]) -> aiohttp.web.Response:
    body = {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": status,
        "message": message,
        "reason": "Injected" if status != 404 else "NotFound",
    }
    return aiohttp.web.json_response(body, status=status, headers=dict(headers))


def declare_resources(emulator: ClusterEmulator, *, gateway_api: bool = False) -> None:
    """Built-in kinds, the InferenceService CRD, KEDA's ScaledObject and kopf's peerings; the
    Gateway API (bundled with kmock) only when asked, as most clusters lack it."""
    with warnings.catch_warnings():  # kmock reads its bundle with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        emulator.resources.load_bundled()
    if not gateway_api:
        for resource in [r for r in emulator.resources if r.group == GATEWAY_GROUP]:
            emulator.resources.pop(resource)
    emulator.resources[ISVC_RESOURCE] = kmock.ResourceInfo(
        kind=INFERENCE_SERVICE.kind,
        singular=SINGULAR,
        namespaced=True,
        verbs={"list", "watch", "get", "patch", "create", "delete"},
        shortnames=set(SHORT_NAMES),
        subresources={"status"},
    )
    emulator.resources["keda.sh/v1alpha1/scaledobjects"] = kmock.ResourceInfo(
        kind="ScaledObject",
        singular="scaledobject",
        namespaced=True,
        verbs={"list", "watch", "get", "patch", "create", "delete"},
        subresources={"status"},
    )
    emulator.resources["kopf.dev/v1/kopfpeerings"] = kmock.ResourceInfo(
        kind="KopfPeering",
        singular="kopfpeering",
        namespaced=True,
        verbs={"list", "watch", "get", "patch", "create"},
    )
    emulator.resources["kopf.dev/v1/clusterkopfpeerings"] = kmock.ResourceInfo(
        kind="ClusterKopfPeering",
        singular="clusterkopfpeering",
        namespaced=False,
        verbs={"list", "watch", "get", "patch", "create"},
    )


def kubeconfig(server: str) -> str:
    """A kubeconfig (JSON is YAML) pointing at ``server`` with a dummy token."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": server}}],
            "users": [{"name": "kmock", "user": {"token": "kmock"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        }
    )
