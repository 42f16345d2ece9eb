"""The scheduler alone (``scheduler.py``), without kopf: an in-memory store of InferenceServices
stands in for the API reader, a recording coroutine for the reconcile. Bursts coalesce, one
reconcile per resource at a time, temporary errors retried and logged, the resync loop logs
what it absorbs, and a resource's state goes once nothing holds it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf
import pytest

from modelfleet_operator.kinds import INFERENCE_SERVICE, KindRef
from modelfleet_operator.kube import Manifest, NamespaceTerminating
from modelfleet_operator.reconcile import Outcome
from modelfleet_operator.scheduler import HANDLED, Scheduler, with_retries

LOGGER = "modelfleet_operator.scheduler"


def isvc(namespace: str, name: str, **meta: Any) -> Manifest:
    """An InferenceService as kopf leaves it once it has handled its creation."""
    metadata = {"namespace": namespace, "name": name, "annotations": {HANDLED: "{}"}, **meta}
    return {"kind": INFERENCE_SERVICE.kind, "metadata": metadata, "spec": {}}


class Store:
    """InferenceServices by (namespace, name); a list can be made to fail per namespace."""

    def __init__(self, *bodies: Manifest) -> None:
        self.objects = {(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in bodies}
        self.list_errors: dict[str | None, Exception] = {}

    async def get(self, ref: KindRef, namespace: str, name: str) -> Manifest | None:
        assert ref == INFERENCE_SERVICE
        return self.objects.get((namespace, name))

    async def list(
        self, ref: KindRef, namespace: str | None, labels: Mapping[str, str]
    ) -> list[Manifest]:
        assert ref == INFERENCE_SERVICE and not labels
        if namespace in self.list_errors:
            raise self.list_errors[namespace]
        return [b for (ns, _), b in self.objects.items() if namespace in (None, ns)]


class Recorder:
    """The reconcile: records each call and how many run at once; scripted failures first."""

    def __init__(self) -> None:
        self.calls: list[Mapping[str, Any]] = []
        self.running = 0
        self.most_at_once = 0
        self.failures: dict[str, list[Exception]] = {}
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.reports: list[tuple[str, Outcome]] = []
        self.gone: list[tuple[str, str]] = []

    async def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        self.calls.append(body)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.entered.set()
        try:
            await asyncio.sleep(0)  # let any other task that could overlap run now
            if self.hold is not None:
                await self.hold.wait()
            failures = self.failures.get(body["metadata"]["name"]) or []
            if failures:
                raise failures.pop(0)
            return Outcome(applied=(f"Deployment/{body['metadata']['name']}",))
        finally:
            self.running -= 1

    def report(self, body: Mapping[str, Any], outcome: Outcome) -> None:
        self.reports.append((body["metadata"]["name"], outcome))

    def forget(self, namespace: str, name: str) -> None:
        self.gone.append((namespace, name))

    def names(self) -> list[str]:
        return [body["metadata"]["name"] for body in self.calls]


def scheduler(store: Store, recorder: Recorder, coalesce: float = 0.01) -> Scheduler:
    return Scheduler(
        store,
        recorder.reconcile,
        recorder.report,
        recorder.forget,
        coalesce_seconds=coalesce,
        retries=3,
    )


async def until(condition: Any, what: str, timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


async def always_active() -> bool:
    return True


async def test_a_burst_of_triggers_is_one_reconcile() -> None:
    recorder = Recorder()
    sched = scheduler(Store(isvc("ml", "iris")), recorder)
    await asyncio.gather(*(sched.trigger("ml", "iris") for _ in range(20)))
    assert recorder.names() == ["iris"]
    assert [name for name, _ in recorder.reports] == ["iris"]
    assert sched.tracked() == set()


async def test_a_change_during_a_reconcile_queues_exactly_one_more() -> None:
    recorder = Recorder()
    recorder.hold = asyncio.Event()
    sched = scheduler(Store(isvc("ml", "iris")), recorder)
    first = asyncio.create_task(sched.trigger("ml", "iris"))
    await recorder.entered.wait()
    later = [asyncio.create_task(sched.trigger("ml", "iris")) for _ in range(5)]
    await until(
        lambda: ("ml", "iris") in sched.tracked() and all(t.done() for t in later[1:]),
        "the later triggers to join the queued one",
    )
    assert len(recorder.calls) == 1  # the queued one waits for the lock
    recorder.hold.set()
    await asyncio.gather(first, *later)
    assert recorder.names() == ["iris", "iris"]
    assert recorder.most_at_once == 1
    assert sched.tracked() == set()


async def test_reconciles_of_one_resource_never_overlap_others_do() -> None:
    recorder = Recorder()
    store = Store(isvc("ml", "iris"), isvc("ml", "resnet"))
    sched = scheduler(store, recorder, coalesce=0)
    await asyncio.gather(
        sched.reconcile_now(isvc("ml", "iris")),
        sched.trigger("ml", "iris"),
        sched.reconcile_now(isvc("ml", "iris")),
    )
    assert recorder.names() == ["iris"] * 3
    assert recorder.most_at_once == 1
    await asyncio.gather(sched.trigger("ml", "iris"), sched.trigger("ml", "resnet"))
    assert recorder.most_at_once == 2  # different resources do not wait for each other
    assert sched.tracked() == set()


async def test_reconcile_now_reads_the_live_copy() -> None:
    recorder = Recorder()
    live = isvc("ml", "iris", resourceVersion="7")
    sched = scheduler(Store(live), recorder)
    outcome = await sched.reconcile_now(isvc("ml", "iris", resourceVersion="3"))
    assert outcome is not None and outcome.applied == ("Deployment/iris",)
    assert recorder.calls == [live]
    assert await sched.reconcile_now(isvc("ml", "absent")) is not None  # kopf's copy, then
    assert recorder.calls[-1]["metadata"]["name"] == "absent"
    assert recorder.reports == []  # kopf's handler reports, not the scheduler


async def test_a_deleted_resource_is_forgotten_and_not_reconciled() -> None:
    recorder = Recorder()
    deleting = isvc("ml", "going", deletionTimestamp="2026-11-30T12:00:00Z")
    sched = scheduler(Store(deleting), recorder)
    await sched.trigger("ml", "gone")
    await sched.trigger("ml", "going")
    assert recorder.calls == []
    assert recorder.gone == [("ml", "gone"), ("ml", "going")]
    assert sched.tracked() == set()


async def test_a_resource_kopf_has_not_handled_yet_is_left_to_kopf() -> None:
    recorder = Recorder()
    fresh = isvc("ml", "iris")
    fresh["metadata"]["annotations"] = {}
    sched = scheduler(Store(fresh), recorder)
    await sched.trigger("ml", "iris")
    assert recorder.calls == [] and recorder.gone == []


async def test_a_cancelled_trigger_leaves_nothing_queued() -> None:
    recorder = Recorder()
    sched = scheduler(Store(isvc("ml", "iris")), recorder, coalesce=30)
    waiting = asyncio.create_task(sched.trigger("ml", "iris"))
    await until(lambda: ("ml", "iris") in sched.tracked(), "the trigger to queue")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert sched.tracked() == set()
    sched.coalesce_seconds = 0
    await sched.trigger("ml", "iris")  # not swallowed by a stale "queued" mark
    assert recorder.names() == ["iris"]


async def test_temporary_errors_are_retried_after_their_delay_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    recorder.failures["iris"] = [kopf.TemporaryError("409", delay=0.01) for _ in range(2)]
    sched = scheduler(Store(isvc("ml", "iris")), recorder)
    with caplog.at_level(logging.INFO, LOGGER):
        await sched.trigger("ml", "iris")
    assert recorder.names() == ["iris"] * 3
    assert [name for name, _ in recorder.reports] == ["iris"]
    retried = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(retried) == 2, retried
    assert "ml/iris: attempt 1 of 3 failed" in retried[0] and "409" in retried[0]


async def test_the_last_temporary_error_propagates_and_the_state_goes() -> None:
    recorder = Recorder()
    recorder.failures["iris"] = [kopf.TemporaryError(f"try {i}", delay=0.01) for i in range(3)]
    sched = scheduler(Store(isvc("ml", "iris")), recorder)
    with pytest.raises(kopf.TemporaryError, match="try 2"):
        await sched.trigger("ml", "iris")
    assert len(recorder.calls) == 3 and recorder.reports == []
    assert sched.tracked() == set()


async def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    async def refuse() -> None:
        nonlocal calls
        calls += 1
        raise kopf.PermanentError("403")

    with pytest.raises(kopf.PermanentError):
        await with_retries(refuse, 5, "ml/iris")
    assert calls == 1


async def test_a_terminating_namespace_is_absorbed(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    recorder.failures["iris"] = [NamespaceTerminating("403 NamespaceTerminating")]
    recorder.failures["resnet"] = [NamespaceTerminating("403 NamespaceTerminating")]
    sched = scheduler(Store(isvc("ml", "iris"), isvc("ml", "resnet")), recorder)
    with caplog.at_level(logging.DEBUG, LOGGER):
        await sched.trigger("ml", "iris")
        assert await sched.reconcile_now(isvc("ml", "resnet")) is None
    assert recorder.reports == []
    assert sum("namespace is being deleted" in r.getMessage() for r in caplog.records) == 2


async def test_resync_triggers_every_resource_of_the_watched_namespaces() -> None:
    recorder = Recorder()
    store = Store(isvc("ml", "iris"), isvc("ml", "resnet"), isvc("other", "bert"))
    sched = scheduler(store, recorder, coalesce=0)
    await sched.resync(["ml"], always_active)
    assert sorted(recorder.names()) == ["iris", "resnet"]
    await sched.resync([], always_active)
    assert sorted(recorder.names()) == ["bert", "iris", "iris", "resnet", "resnet"]
    assert sched.tracked() == set()


async def test_a_paused_follower_resyncs_nothing() -> None:
    recorder = Recorder()
    sched = scheduler(Store(isvc("ml", "iris")), recorder, coalesce=0)

    async def paused() -> bool:
        return False

    await sched.resync([], paused)
    assert recorder.calls == []


async def test_resync_logs_every_failure_it_absorbs(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    store = Store(isvc("ml", "a"), isvc("ml", "b"), isvc("ml", "c"), isvc("ml", "d"))
    store.objects[("other", "e")] = isvc("other", "e")
    store.list_errors["broken"] = kopf.TemporaryError("list 503", delay=0.01)
    recorder.failures["a"] = [kopf.PermanentError("422 refused")]
    recorder.failures["b"] = [kopf.TemporaryError("503", delay=0.01) for _ in range(3)]
    recorder.failures["c"] = [RuntimeError("a bug")]
    sched = scheduler(store, recorder, coalesce=0)
    with caplog.at_level(logging.WARNING, LOGGER):
        await sched.resync(["broken", "ml", "other"], always_active)
    assert sorted(set(recorder.names())) == ["a", "b", "c", "d", "e"]  # one failure stops none
    lines = {r.getMessage(): r for r in caplog.records if r.levelno >= logging.WARNING}
    assert any("in broken: list 503" in line for line in lines), lines
    assert any("ml/a failed" in line and "422 refused" in line for line in lines), lines
    assert any("ml/b failed" in line and "503" in line for line in lines), lines
    (bug,) = [r for line, r in lines.items() if "ml/c" in line]
    assert bug.levelno == logging.ERROR and bug.exc_info is not None  # with its traceback
    assert [name for name, _ in recorder.reports] == ["d", "e"]
    assert sched.tracked() == set()


async def test_resync_logs_an_unreadable_peering_object(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    sched = scheduler(Store(isvc("ml", "iris")), recorder, coalesce=0)

    async def unreadable() -> bool:
        raise kopf.TemporaryError("peering 500", delay=1)

    with caplog.at_level(logging.WARNING, LOGGER):
        await sched.resync([], unreadable)
    assert recorder.calls == []
    assert any("peering 500" in r.getMessage() for r in caplog.records)


async def test_the_resync_loop_runs_rounds_until_cancelled() -> None:
    recorder = Recorder()
    sched = scheduler(Store(isvc("ml", "iris")), recorder, coalesce=0)
    loop = asyncio.create_task(sched.resync_loop(0.01, [], always_active))
    await until(lambda: len(recorder.calls) >= 3, "three resync rounds")
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert sched.tracked() == set()
