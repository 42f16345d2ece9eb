"""Thin kopf glue: which events run a reconcile, and with what settings.

``register(registry, config, options)`` attaches every handler to a kopf registry; ``main.py``
calls it with a fresh registry for the real operator, the integration tests do the same against
the kmock emulator. Nothing lives in module globals: the configuration and the API client are
built in the start-up handler and kept in kopf's memo (as a :class:`reconcile.Runtime`).

Three triggers share one reconcile (``reconcile.py``), serialised per resource:

* kopf's create/update/resume handlers on InferenceServices (kopf retries temporary errors;
  an invalid spec raises ``kopf.PermanentError``: one attempt per spec change);
* event handlers on the children (selected by the managed-by labels): a child deleted or edited
  by hand re-triggers the reconcile of its owner within a second. The same watches feed a kopf
  index per child kind, keyed by (namespace, owner uid), from which every reconcile reads the
  live children: no list calls per reconcile (kopf updates an index before it runs the event's
  handlers, so a drift-triggered reconcile sees the drift);
* a resync loop as a backstop, every ``resync_seconds``. It is a plain task, not a kopf timer:
  kopf puts a finalizer on every object with a timer, and a finalizer makes deletion depend on
  the operator running. With no timer and no deletion handler there is no finalizer at all, and
  deletion is left to owner-reference garbage collection (O8). Being ours, it does not pause
  with kopf: under peering it asks ``peering.active`` before each round (O11).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from modelfleet_operator import labels
from modelfleet_operator.config import OperatorConfig, version_from_info
from modelfleet_operator.kube import KubeClient, Manifest, NamespaceTerminating
from modelfleet_operator.metrics import CountingApplier, OperatorMetrics, serve
from modelfleet_operator.peering import Peering, active
from modelfleet_operator.reconcile import ISVC, Outcome, Runtime, build_runtime, reconcile
from modelfleet_operator.render.delivery import auto_delivery

MEMO_KEY = "modelfleet"
METRICS_KEY = "modelfleet_metrics"
"""Memo key of the :class:`OperatorMetrics` (``main`` may put one there before start-up)."""
GROUP, VERSION = ISVC.api_version.split("/")
GATEWAY_API = "gateway.networking.k8s.io/v1"
RECONCILE_ID = "modelfleet-reconcile"
"""The id of the InferenceService handlers (and of kopf's progress annotation for them)."""
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LiveOptions:
    """How the live half runs; set from the ``modelfleet operator`` command line."""

    resync_seconds: float = 60.0
    """Backstop: every resource is reconciled at least this often, events or not."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to resync; empty means all (cluster-wide)."""
    retries: int = 5
    """Attempts of a child- or resync-triggered reconcile on temporary API errors."""
    handler_backoff: float = 2.0
    """Seconds before kopf retries a handler that failed with an unexpected error."""
    request_timeout: float = 10.0
    """Seconds for one API request of ours before it counts as a temporary error."""
    coalesce_seconds: float = 0.2
    """Child events for one resource within this window share one reconcile (its children
    arrive on separate watches: without it, the first event's reconcile finds the others not
    yet indexed and re-applies them, a wasted write each)."""
    endpoint: str | None = None
    """``http://host:port/healthz``: serve health there and ``/metrics`` on the same port."""
    peering: Peering | None = None
    """kopf peering of this replica; ``None`` for a standalone operator."""


def configure(settings: kopf.OperatorSettings, options: LiveOptions) -> None:
    """Short, explicit backoffs: kopf's defaults (60 s, Fibonacci to 10 min) miss O3-O5."""
    settings.execution.default_backoff = options.handler_backoff
    settings.networking.error_backoffs = (0.5, 1, 2, 3, 5)
    settings.networking.request_timeout = 30.0
    settings.queueing.error_delays = (1, 1, 2, 3, 5, 8, 13)
    settings.watching.reconnect_backoff = 0.5
    settings.watching.server_timeout = 300
    # Our own Events say what users should see; kopf's per-handler INFO logs would be a write
    # (an Event) on every reconcile.
    settings.posting.level = logging.WARNING


async def detect_gateway_api(config: OperatorConfig, client: KubeClient) -> OperatorConfig:
    """``config`` with ``gateway_api`` decided: as set, else whether HTTPRoutes are served."""
    if config.gateway_api is not None:
        return config
    served = await client.serves(GATEWAY_API, "httproutes")
    log.info(
        "Gateway API %s: HTTPRoutes %s rendered for canary traffic.",
        "found" if served else "not found",
        "are" if served else "are not",
    )
    return config.model_copy(update={"gateway_api": served})


async def detect_server_version(config: OperatorConfig, client: KubeClient) -> OperatorConfig:
    """``config`` with ``server_version`` decided: as set, else the API server's own (which
    decides ``ociDelivery: Auto``); refused or unreadable, it stays unset and Auto means Pull
    (a temporary error fails the start-up handler, which kopf retries)."""
    if config.server_version is not None:
        return config
    try:
        info = await client.version()
    except kopf.PermanentError as exc:  # a cluster that hides /version (403): not fatal
        log.warning("No API server version (%s): ociDelivery Auto means Pull.", exc)
        return config
    try:
        version = version_from_info(info)
    except ValueError:
        log.warning("The API server's version %r is unreadable: ociDelivery Auto means Pull.", info)
        return config
    log.info("API server %s: ociDelivery Auto means %s.", version, auto_delivery(version))
    return config.model_copy(update={"server_version": version})


def runtime_of(memo: Any) -> Runtime:
    """The Runtime the start-up handler put in kopf's memo."""
    runtime: Runtime = memo[MEMO_KEY]
    return runtime


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


def owner_uid(child: Mapping[str, Any]) -> str | None:
    """Uid of the InferenceService controlling ``child``, if any."""
    for ref in child.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == ISVC.kind and ref.get("controller") and ref.get("uid"):
            return str(ref["uid"])
    return None


def index_child(body: kopf.Body, **_: Any) -> dict[tuple[str | None, str], Manifest] | None:
    """kopf index function: each managed child under (namespace, its controller's uid)."""
    uid = owner_uid(body)
    return {(body.metadata.namespace, uid): dict(body)} if uid else None


def index_id(plural: str) -> str:
    """The kopf handler id (and startup keyword) of the index of one child kind."""
    return f"modelfleet_children_{plural}"


def owner_of(child: Mapping[str, Any]) -> str | None:
    """Name of the InferenceService controlling ``child`` (owner reference, else label)."""
    for ref in child.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == ISVC.kind and ref.get("controller"):
            return str(ref.get("name"))
    name = (child.get("metadata", {}).get("labels") or {}).get(labels.ISVC)
    return str(name) if name else None


async def _reconcile_with_retries(rt: Runtime, body: Mapping[str, Any], retries: int) -> Outcome:
    for attempt in range(retries):
        try:
            return await reconcile(body, rt)
        except kopf.TemporaryError as exc:
            if attempt == retries - 1:
                raise
            await asyncio.sleep(exc.delay or 1.0)
    raise AssertionError("unreachable")  # pragma: no cover


async def trigger(rt: Runtime, namespace: str, name: str, options: LiveOptions) -> None:
    """Reconcile one resource outside kopf's handlers (drift, resync); bursts coalesce."""
    if not rt.claim(namespace, name):
        return  # one is already waiting: it will see this change too
    await asyncio.sleep(options.coalesce_seconds)  # debounce: let sibling events join this one
    async with rt.exclusive(namespace, name):
        rt.release(namespace, name)
        body = await rt.applier.get(ISVC, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            rt.metrics.set_ready(namespace, name, None)
            return
        if "kopf.zalando.org/last-handled-configuration" not in (
            body["metadata"].get("annotations") or {}
        ):
            return  # kopf has not handled its creation yet; its handler will reconcile
        try:
            outcome = await _reconcile_with_retries(rt, body, options.retries)
        except NamespaceTerminating:
            log.debug("%s/%s: its namespace is being deleted; nothing to do", namespace, name)
            return
    report(body, outcome)


async def resync_loop(rt: Runtime, options: LiveOptions) -> None:
    """Reconcile every InferenceService every ``resync_seconds``, whatever happened."""
    while True:
        await asyncio.sleep(options.resync_seconds)
        try:
            if not await active(rt.applier, options.peering, options.namespaces):
                continue  # a paused follower stays silent; the leader resyncs
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            log.warning("Resync could not read the peering object: %s", exc)
            continue
        for namespace in options.namespaces or (None,):
            try:
                items = await rt.applier.list(ISVC, namespace, {})
            except (kopf.TemporaryError, kopf.PermanentError) as exc:
                log.warning("Resync could not list InferenceServices: %s", exc)
                continue
            for item in items:
                meta = item["metadata"]
                with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
                    await trigger(rt, meta["namespace"], meta["name"], options)


async def handle_isvc(body: kopf.Body, rt: Runtime) -> None:
    """The create/update/resume handler's body: reconcile the freshest copy, report, fail."""
    namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
    async with rt.exclusive(namespace, name):
        # Another trigger may have written status since kopf got this body: compare against the
        # live object, or a stale status would be written twice.
        fresh = await rt.applier.get(ISVC, namespace, name)
        try:
            outcome = await reconcile(fresh if fresh is not None else dict(body), rt)
        except NamespaceTerminating:
            log.debug("%s/%s: its namespace is being deleted; nothing to do", namespace, name)
            return
    report(body, outcome)
    if outcome.invalid is not None:
        if outcome.status_written:
            kopf.warn(body, reason="InvalidSpec", message=outcome.invalid)
        raise kopf.PermanentError(f"Invalid spec: {outcome.invalid}")


def register(registry: kopf.OperatorRegistry, config: OperatorConfig, options: LiveOptions) -> None:
    """Attach every handler of the operator to ``registry``."""
    _register_activities(registry, config, options)
    _register_resource(registry)
    _register_children(registry, options)


def _register_activities(
    registry: kopf.OperatorRegistry, config: OperatorConfig, options: LiveOptions
) -> None:
    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
        configure(settings, options)
        metrics = memo.setdefault(METRICS_KEY, OperatorMetrics())
        client = KubeClient(lambda: login(settings), timeout=options.request_timeout)
        resolved = await detect_server_version(await detect_gateway_api(config, client), client)
        rt = build_runtime(resolved, CountingApplier(client, metrics), metrics)
        rt.children = {kind: kwargs[index_id(plural)] for _, kind, plural in _child_kinds()}
        memo[MEMO_KEY] = rt
        memo["modelfleet_client"] = client
        memo["modelfleet_resync"] = asyncio.create_task(resync_loop(rt, options))
        if options.endpoint:
            memo["modelfleet_server"] = await serve(options.endpoint, metrics)

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
    @kopf.on.resume(GROUP, VERSION, ISVC.plural, registry=registry, id=RECONCILE_ID)
    @kopf.on.create(GROUP, VERSION, ISVC.plural, registry=registry, id=RECONCILE_ID)
    @kopf.on.update(GROUP, VERSION, ISVC.plural, registry=registry, field="spec", id=RECONCILE_ID)
    async def reconcile_isvc(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await handle_isvc(body, runtime_of(memo))


def _register_children(registry: kopf.OperatorRegistry, options: LiveOptions) -> None:
    async def child_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if type is None:
            return  # the initial listing: kopf's resume handlers already reconcile everything
        owner = owner_of(body)
        if owner is not None:
            await trigger(runtime_of(memo), body.metadata.namespace or "default", owner, options)

    for api_version, _kind, plural in _child_kinds():
        group, _, version = api_version.rpartition("/")
        selector = dict(labels.managed_selector())
        kopf.index(group, version, plural, registry=registry, labels=selector, id=index_id(plural))(
            index_child
        )
        kopf.on.event(group, version, plural, registry=registry, labels=selector)(child_changed)


def _child_kinds() -> list[tuple[str, str, str]]:
    from modelfleet_operator import render  # the pure half: no import cycle, lazily for clarity

    return list(render.managed_kinds())
