"""When a reconcile runs: one at a time per resource, bursts coalesced, temporary errors retried,
and a resync loop as the backstop.

kopf schedules its own handlers, but two of the operator's triggers run outside them: the child
watches (a child deleted or edited by hand re-triggers its owner's reconcile) and the periodic
resync. :class:`Scheduler` is the one place that decides when those run, and the one lock that
kopf's handlers share with them. ``handlers.py`` builds it at start-up with the reconcile
function (``reconcile.py``) and an API reader injected, so the tests drive it without kopf.

* :meth:`Scheduler.exclusive`: the per-resource lock around every reconcile, so two triggers
  never write one resource's children at once. :meth:`Scheduler.reconcile_now` (kopf's
  create/update/resume handlers) takes it too.
* :meth:`Scheduler.trigger`: the first trigger of a burst waits ``coalesce_seconds`` for its
  siblings (children arrive on separate watches) and then reconciles the live copy; triggers
  arriving while it waits return at once, as it will see their change too.
* :meth:`Scheduler.resync_loop`: every ``resync_seconds``, a trigger for every
  InferenceService, after asking the peering check (a paused follower stays silent, O11).

A resource's state (its lock and its "queued" mark) exists only while something holds or waits
for it: a deleted resource, or a cancelled trigger, leaves nothing behind. Every failure
absorbed here gets a log line; the ones not absorbed go to the caller (kopf logs and retries
its handlers' errors).

The retry loop (:func:`with_retries`) is hand-written rather than tenacity: the wait is the
delay that ``kube.py`` put on the ``kopf.TemporaryError`` (a 429's ``Retry-After``), and
tenacity is not among the operator image's dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import kopf

from modelfleet_operator.kinds import INFERENCE_SERVICE, KindRef
from modelfleet_operator.kube import Manifest, NamespaceTerminating
from modelfleet_operator.reconcile import Outcome

HANDLED = "kopf.zalando.org/last-handled-configuration"
"""kopf's annotation on a resource whose creation its handlers have handled."""
DEFAULT_DELAY = 1.0
"""Seconds before a retry when a ``kopf.TemporaryError`` carries no delay."""
Key = tuple[str, str]
"""(namespace, name) of one InferenceService."""
Body = Mapping[str, Any]
T = TypeVar("T")
log = logging.getLogger(__name__)


class Reader(Protocol):
    """What the scheduler needs of an ``Applier``: reads of InferenceServices."""

    async def get(self, ref: KindRef, namespace: str, name: str) -> Manifest | None: ...

    async def list(
        self, ref: KindRef, namespace: str | None, labels: Mapping[str, str]
    ) -> list[Manifest]: ...


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int, what: str) -> T:
    """``call()``, called again after each ``kopf.TemporaryError`` (once its delay has passed),
    at most ``attempts`` times in all; the last error propagates. Each retry is logged."""
    attempt = 1
    while True:
        try:
            return await call()
        except kopf.TemporaryError as exc:
            if attempt >= attempts:
                raise
            delay = exc.delay or DEFAULT_DELAY
            log.info(
                "%s: attempt %d of %d failed, again in %.1f s: %s",
                what,
                attempt,
                attempts,
                delay,
                exc,
            )
            attempt += 1
            await asyncio.sleep(delay)


@dataclasses.dataclass
class _Slot:
    """One resource's scheduling state."""

    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    users: int = 0
    """Tasks holding or waiting for ``lock``, or waiting out the debounce."""
    queued: bool = False
    """A trigger is waiting out the debounce: later triggers join it."""


class Scheduler:
    """Runs reconciles of InferenceServices for the triggers outside kopf, and serialises them
    with kopf's own handlers."""

    def __init__(
        self,
        reader: Reader,
        reconcile: Callable[[Body], Awaitable[Outcome]],
        report: Callable[[Body, Outcome], None],
        gone: Callable[[str, str], None],
        *,
        coalesce_seconds: float,
        retries: int,
    ) -> None:
        """``reconcile`` brings one resource to its spec; ``report`` tells users what it did
        (Events); ``gone(namespace, name)`` forgets a resource found deleted (metrics)."""
        self.reader = reader
        self.reconcile = reconcile
        self.report = report
        self.gone = gone
        self.coalesce_seconds = coalesce_seconds
        self.retries = retries
        self._slots: dict[Key, _Slot] = {}

    def tracked(self) -> set[Key]:
        """The resources that have scheduling state now (held, waited for or queued)."""
        return set(self._slots)

    def _hold(self, key: Key) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        slot.users += 1
        return slot

    def _release(self, key: Key, slot: _Slot) -> None:
        slot.users -= 1
        if slot.users == 0 and not slot.queued:
            del self._slots[key]  # nothing holds it: a later trigger starts afresh

    @contextlib.asynccontextmanager
    async def exclusive(self, namespace: str, name: str) -> AsyncIterator[None]:
        """Hold the resource's lock: one reconcile of a resource at a time."""
        key = (namespace, name)
        slot = self._hold(key)
        try:
            async with slot.lock:
                yield
        finally:
            self._release(key, slot)

    async def reconcile_now(self, body: Body) -> Outcome | None:
        """kopf's create/update/resume handler: reconcile under the lock, from the live copy
        (another trigger may have written status since kopf read ``body``); None when the
        namespace is being deleted. Other errors are kopf's to log and retry."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        async with self.exclusive(namespace, name):
            fresh = await self.reader.get(INFERENCE_SERVICE, namespace, name)
            try:
                return await self.reconcile(fresh if fresh is not None else body)
            except NamespaceTerminating:
                log.debug("%s/%s: its namespace is being deleted; nothing to do", namespace, name)
                return None

    async def trigger(self, namespace: str, name: str) -> None:
        """Reconcile one resource outside kopf's handlers (drift, resync); bursts coalesce.
        A temporary error that outlasts the retries, or a permanent one, propagates."""
        key = (namespace, name)
        waiting = self._slots.get(key)
        if waiting is not None and waiting.queued:
            return  # one is already waiting: it will see this change too
        slot = self._hold(key)
        slot.queued = True
        try:
            await asyncio.sleep(self.coalesce_seconds)  # let sibling events join this one
            async with slot.lock:
                slot.queued = False  # from here on, a new change needs a new reconcile
                done = await self._reconcile_live(namespace, name)
        finally:
            slot.queued = False
            self._release(key, slot)
        if done is not None:
            self.report(*done)

    async def _reconcile_live(self, namespace: str, name: str) -> tuple[Body, Outcome] | None:
        body = await self.reader.get(INFERENCE_SERVICE, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.gone(namespace, name)
            return None
        if HANDLED not in (body["metadata"].get("annotations") or {}):
            return None  # kopf has not handled its creation yet; its handler will reconcile
        try:
            outcome = await with_retries(
                lambda: self.reconcile(body), self.retries, f"{namespace}/{name}"
            )
        except NamespaceTerminating:
            log.debug("%s/%s: its namespace is being deleted; nothing to do", namespace, name)
            return None
        return body, outcome

    async def resync(
        self, namespaces: Sequence[str], active: Callable[[], Awaitable[bool]]
    ) -> None:
        """One round: a trigger for every InferenceService in ``namespaces`` (all when empty),
        unless ``active()`` says another replica leads. Failures are logged, never raised."""
        try:
            if not await active():
                return  # a paused follower stays silent; the leader resyncs
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            log.warning("Resync skipped: the peering object could not be read: %s", exc)
            return
        for namespace in namespaces or (None,):
            try:
                items = await self.reader.list(INFERENCE_SERVICE, namespace, {})
            except (kopf.TemporaryError, kopf.PermanentError) as exc:
                where = f"in {namespace}" if namespace else "in any namespace"
                log.warning("Resync could not list InferenceServices %s: %s", where, exc)
                continue
            for item in items:
                await self._resync_one(item["metadata"]["namespace"], item["metadata"]["name"])

    async def _resync_one(self, namespace: str, name: str) -> None:
        try:
            await self.trigger(namespace, name)
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            log.warning(
                "Resync of %s/%s failed, the next round tries again: %s", namespace, name, exc
            )
        except Exception:  # a bug must not end the backstop for every other resource
            log.exception("Resync of %s/%s failed unexpectedly", namespace, name)

    async def resync_loop(
        self, period: float, namespaces: Sequence[str], active: Callable[[], Awaitable[bool]]
    ) -> None:
        """Every ``period`` seconds, :meth:`resync`; runs until cancelled (at clean-up)."""
        while True:
            await asyncio.sleep(period)
            await self.resync(namespaces, active)
