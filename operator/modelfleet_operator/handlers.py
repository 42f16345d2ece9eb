"""kopf registration: which events run a reconcile, each with a short body.

``register(registry, config)`` attaches every handler to a kopf registry; ``main.py`` calls it
with a fresh registry for the real operator, the integration tests do the same against the
kmock emulator. Nothing lives in module globals: the start-up handler builds the API client,
the :class:`reconcile.LiveContext` and the :class:`scheduler.Scheduler`, and keeps them in
kopf's memo.

Three triggers share one reconcile (``reconcile.py``), serialised per resource by the
scheduler (``scheduler.py``):

* kopf's create/update/resume handlers on InferenceServices (kopf retries temporary errors;
  an invalid spec raises ``kopf.PermanentError``: one attempt per spec change);
* event handlers on the children (selected by the managed-by labels): a child deleted or edited
  by hand re-triggers the reconcile of its owner within a second. The same watches feed a kopf
  index per child kind, keyed by (namespace, owner uid), from which every reconcile reads the
  live children: no list calls per reconcile (kopf updates an index before it runs the event's
  handlers, so a drift-triggered reconcile sees the drift);
* the scheduler's resync loop as a backstop, every ``resync_seconds``. It is a plain task, not
  a kopf timer: kopf puts a finalizer on every object with a timer, and a finalizer makes
  deletion depend on the operator running. With no timer and no deletion handler there is no
  finalizer at all, and deletion is left to owner-reference garbage collection (O8). Being
  ours, it does not pause with kopf: under peering it asks ``peering.active`` before each
  round (O11).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from modelfleet_operator import labels, predictor_pods, render
from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.discovery import discover
from modelfleet_operator.kinds import INFERENCE_SERVICE, controller_of
from modelfleet_operator.kube import KubeClient, Manifest
from modelfleet_operator.metrics import CountingApplier, OperatorMetrics, serve
from modelfleet_operator.peering import active, peering_of
from modelfleet_operator.reconcile import LiveContext, Outcome, build_context, reconcile
from modelfleet_operator.scheduler import Scheduler

SCHEDULER_KEY = "modelfleet_scheduler"
"""Memo key of the :class:`Scheduler` the start-up handler builds."""
METRICS_KEY = "modelfleet_metrics"
"""Memo key of the :class:`OperatorMetrics` (``main`` may put one there before start-up)."""
RECONCILE_ID = "modelfleet-reconcile"
"""The id of the InferenceService handlers (and of kopf's progress annotation for them)."""
log = logging.getLogger(__name__)


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """Short, explicit backoffs: kopf's defaults (60 s, Fibonacci to 10 min) miss O3-O5."""
    settings.execution.default_backoff = config.handler_backoff
    settings.networking.error_backoffs = (0.5, 1, 2, 3, 5)
    settings.networking.request_timeout = 30.0
    settings.queueing.error_delays = (1, 1, 2, 3, 5, 8, 13)
    settings.watching.reconnect_backoff = 0.5
    settings.watching.server_timeout = 300
    # Our own Events say what users should see; kopf's per-handler INFO logs would be a write
    # (an Event) on every reconcile.
    settings.posting.level = logging.WARNING


def scheduler_of(memo: Any) -> Scheduler:
    """The Scheduler the start-up handler put in kopf's memo."""
    scheduler: Scheduler = memo[SCHEDULER_KEY]
    return scheduler


def login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In-cluster service account first, else the kubeconfig named by $KUBECONFIG."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise kopf.LoginError("No service account token and no kubeconfig found.")
    return info


def report(body: Mapping[str, Any], outcome: Outcome) -> None:
    """Kubernetes Events for what a user should see; nothing when nothing changed."""
    target = body if isinstance(body, kopf.Body) else kopf.Body(cast(kopf.RawBody, dict(body)))
    if outcome.applied:
        kopf.info(target, reason="Applied", message="Applied " + ", ".join(outcome.applied))
    if outcome.deleted:
        kopf.info(target, reason="Deleted", message="Deleted " + ", ".join(outcome.deleted))


def index_child(body: kopf.Body, **_: Any) -> dict[tuple[str | None, str], Manifest] | None:
    """kopf index function: each managed child under (namespace, its controller's uid)."""
    owner = controller_of(body)
    return {(body.metadata.namespace, owner.uid): dict(body)} if owner and owner.uid else None


def index_pod(body: kopf.Body, **_: Any) -> dict[tuple[str | None, str], Manifest] | None:
    """kopf index function: each predictor pod, slimmed, under (namespace, its
    InferenceService's name), for ``status.components.*.lastColdStartSeconds``."""
    name = (body.metadata.labels or {}).get(labels.INFERENCE_SERVICE_LABEL)
    return {(body.metadata.namespace, name): predictor_pods.slim(body)} if name else None


def index_id(plural: str) -> str:
    """The kopf handler id (and startup keyword) of the index of one child kind."""
    return f"modelfleet_children_{plural}"


def owner_of(child: Mapping[str, Any]) -> str | None:
    """Name of the InferenceService controlling ``child`` (owner reference, else label)."""
    owner = controller_of(child)
    if owner is not None:
        return owner.name
    name = (child.get("metadata", {}).get("labels") or {}).get(labels.INFERENCE_SERVICE_LABEL)
    return str(name) if name else None


def build_scheduler(ctx: LiveContext, config: OperatorConfig) -> Scheduler:
    """The Scheduler of the live operator: our reconcile, kopf's Events, our metrics."""

    async def run(body: Mapping[str, Any]) -> Outcome:
        return await reconcile(body, ctx)

    def gone(namespace: str, name: str) -> None:
        ctx.metrics.set_ready(namespace, name, None)

    return Scheduler(
        ctx.applier,
        run,
        report,
        gone,
        coalesce_seconds=config.coalesce_seconds,
        retries=config.retries,
    )


async def handle_isvc(body: kopf.Body, scheduler: Scheduler) -> None:
    """The create/update/resume handler's body: reconcile, report, fail on an invalid spec."""
    outcome = await scheduler.reconcile_now(dict(body))
    if outcome is None:
        return
    report(body, outcome)
    if outcome.invalid is not None:
        if outcome.status_written:
            kopf.warn(body, reason="InvalidSpec", message=outcome.invalid)
        raise kopf.PermanentError(f"Invalid spec: {outcome.invalid}")


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Attach every handler of the operator to ``registry``."""
    _register_activities(registry, config)
    _register_resource(registry)
    _register_children(registry)


def _register_activities(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
        configure(settings, config)
        metrics = memo.setdefault(METRICS_KEY, OperatorMetrics())
        client = KubeClient(lambda: login(settings), timeout=config.request_timeout)
        ctx = build_context(
            await discover(config, client), CountingApplier(client, metrics), metrics
        )
        ctx.children = {ref.kind: kwargs[index_id(ref.plural)] for ref in render.managed_kinds()}
        ctx.pods = kwargs[index_id(predictor_pods.POD.plural)]
        scheduler = memo[SCHEDULER_KEY] = build_scheduler(ctx, config)
        memo["modelfleet_client"] = client
        peering = peering_of(config)
        resync = scheduler.resync_loop(
            config.resync_seconds,
            config.namespaces,
            lambda: active(ctx.applier, peering, config.namespaces),
        )
        memo["modelfleet_resync"] = asyncio.create_task(resync)
        if config.liveness:
            memo["modelfleet_server"] = await serve(config.liveness, metrics)

    @kopf.on.login(registry=registry)
    def authenticate(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        return login(settings)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        task = memo.get("modelfleet_resync")
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server = memo.get("modelfleet_server")
        if server is not None:
            await server.cleanup()
        client = memo.get("modelfleet_client")
        if isinstance(client, KubeClient):
            await client.close()


def _register_resource(registry: kopf.OperatorRegistry) -> None:
    # An explicit id: kopf names a handler's progress annotation after it when the handler
    # fails and is retried, and the default (the qualname, "_register_resource.<locals>...")
    # is refused by the real API server ("name part must consist of alphanumeric characters"),
    # so every retry failed and was throttled (seen at 200 InferenceServices on kube-apiserver).
    group, version, plural = (
        INFERENCE_SERVICE.group,
        INFERENCE_SERVICE.version,
        INFERENCE_SERVICE.plural,
    )

    @kopf.on.resume(group, version, plural, registry=registry, id=RECONCILE_ID)
    @kopf.on.create(group, version, plural, registry=registry, id=RECONCILE_ID)
    @kopf.on.update(group, version, plural, registry=registry, field="spec", id=RECONCILE_ID)
    async def reconcile_isvc(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await handle_isvc(body, scheduler_of(memo))


def _register_children(registry: kopf.OperatorRegistry) -> None:
    async def child_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if type is None:
            return  # the initial listing: kopf's resume handlers already reconcile everything
        owner = owner_of(body)
        if owner is not None:
            await scheduler_of(memo).trigger(body.metadata.namespace or "default", owner)

    selector = labels.managed_selector()
    for ref in render.managed_kinds():
        group, version, plural = ref.group, ref.version, ref.plural
        kopf.index(group, version, plural, registry=registry, labels=selector, id=index_id(plural))(
            index_child
        )
        kopf.on.event(group, version, plural, registry=registry, labels=selector)(child_changed)
    # Predictor pods, read-only (not children: their ReplicaSets own them): a pod that turns
    # ready or cannot be scheduled re-triggers its InferenceService's status.
    pod = predictor_pods.POD
    pods_id = index_id(pod.plural)
    kopf.index(pod.group, pod.version, pod.plural, registry=registry, labels=selector, id=pods_id)(
        index_pod
    )
    kopf.on.event(pod.group, pod.version, pod.plural, registry=registry, labels=selector)(
        child_changed
    )
