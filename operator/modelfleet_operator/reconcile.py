"""One level-triggered reconcile of an InferenceService: parse, render, adopt, apply, prune, status.

Called by ``scheduler.py`` for kopf's create/update/resume handlers, for the child watches
(drift) and for the resync loop, always under the scheduler's per-resource lock so that two
paths never reconcile the same resource at once. It reads the children by label, applies only what
differs (``converge.py``), and writes status only when it changed: a converged resource costs
reads and zero writes.

Order of writes: autoscalers that are no longer rendered are deleted *before* anything is
applied (an HPA and a KEDA ScaledObject never both target the Deployment, O9); everything else
that is no longer rendered (a promoted canary's Deployment) is deleted *after* the apply, so
the serving Deployment is updated first.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Mapping
from typing import Any

import kopf

from modelfleet_operator import labels, parse, predictor_pods, render, status
from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.converge import is_converged, stamp
from modelfleet_operator.kinds import INFERENCE_SERVICE, KindRef, controller_of
from modelfleet_operator.kube import Applier, Forbidden, Manifest
from modelfleet_operator.metrics import OperatorMetrics

AUTOSCALER_KINDS = frozenset({"HorizontalPodAutoscaler", "ScaledObject"})
HELD_WITHOUT_TLS_SECRET = frozenset({"Deployment", "Service"})
"""Kinds neither applied nor pruned while the TLS Secret is missing or unfit: a pod cannot
start without it, and a Service switched to TLS ports would lose the pods that still serve."""
ChildKey = tuple[str, str]  # (kind, name)


@dataclasses.dataclass
class LiveContext:
    """What a reconcile needs of the running operator (its settings, API client, metrics and
    kopf's indexes), built by the start-up handler (``handlers.py``) with :func:`build_context`.
    Named for the operator's live half, as opposed to the pure render: not the runtime."""

    config: OperatorConfig
    applier: Applier
    kinds: dict[str, KindRef]
    """Every child kind ``render`` can produce, by kind name."""
    metrics: OperatorMetrics = dataclasses.field(default_factory=OperatorMetrics)
    children: Mapping[str, Mapping[Any, Any]] | None = None
    """Per child kind, kopf's index of children by (namespace, owner uid), when kopf runs."""
    pods: Mapping[Any, Any] | None = None
    """kopf's index of predictor pods (``predictor_pods.slim``) by (namespace, InferenceService
    name), when kopf runs."""


def build_context(
    config: OperatorConfig, applier: Applier, metrics: OperatorMetrics | None = None
) -> LiveContext:
    """A LiveContext for ``config``, knowing every child kind ``render`` can produce."""
    kinds = {ref.kind: ref for ref in render.managed_kinds()}
    metrics = metrics if metrics is not None else OperatorMetrics()
    return LiveContext(config=config, applier=applier, kinds=kinds, metrics=metrics)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one reconcile did, for Events and logs. ``invalid`` holds the spec error, if any."""

    applied: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    status_written: bool = False
    invalid: str | None = None
    ready: str = "Unknown"
    reason: str = ""
    """The Ready condition's reason (InvalidSpec, RolloutInProgress, ...), for the metrics."""

    @property
    def result(self) -> str:
        """The ``result`` label of the reconciles metric."""
        if self.invalid is not None:
            return "invalid"
        return "changed" if self.changed or self.status_written else "unchanged"

    @property
    def changed(self) -> bool:
        """Whether any child was written."""
        return bool(self.applied or self.deleted)


def _key(obj: Mapping[str, Any]) -> ChildKey:
    return str(obj.get("kind")), str(obj.get("metadata", {}).get("name"))


async def read_children(ctx: LiveContext, svc: parse.ParsedService) -> dict[ChildKey, Manifest]:
    """Live children of ``svc`` (controlled by its uid), by kind and name.

    From kopf's watch-fed index when there is one (no API call: listing six kinds per reconcile
    costs the API server O(objects) each, O(n²) over n resources), else listed by label.
    """
    if ctx.children is not None:
        key = (svc.namespace, svc.uid)
        return {_key(obj): obj for index in ctx.children.values() for obj in index.get(key, ())}
    selector = labels.instance_selector(svc.name)
    found: dict[ChildKey, Manifest] = {}
    for ref in ctx.kinds.values():
        for obj in await ctx.applier.list(ref, svc.namespace, selector):
            owner = controller_of(obj)
            if owner is not None and owner.uid == svc.uid:
                found[_key(obj)] = obj
    return found


async def read_pods(ctx: LiveContext, svc: parse.ParsedService) -> list[Manifest]:
    """The predictor pods of ``svc``: from kopf's pod index when there is one (no API call),
    else listed by label."""
    if ctx.pods is not None:
        return list(ctx.pods.get((svc.namespace, svc.name), ()))
    found = await ctx.applier.list(predictor_pods.POD, svc.namespace, labels.pod_selector(svc.name))
    return [predictor_pods.slim(pod) for pod in found]


def desired_children(
    body: Mapping[str, Any], ctx: LiveContext, svc: parse.ParsedService
) -> list[Manifest]:
    """Rendered children, adopted by ``body`` and stamped with their hash."""
    manifests = render.render(svc, ctx.config)
    kopf.adopt(manifests, owner=body)  # type: ignore[arg-type]  # a dict is enough here
    return [stamp(manifest) for manifest in manifests]


async def _prune(ctx: LiveContext, stale: list[Manifest]) -> list[str]:
    deleted = []
    for obj in stale:
        kind, name = _key(obj)
        await ctx.applier.delete(ctx.kinds[kind], obj["metadata"]["namespace"], name)
        deleted.append(f"{kind}/{name}")
    return deleted


async def _apply(
    ctx: LiveContext, desired: list[Manifest], live: dict[ChildKey, Manifest]
) -> tuple[list[Manifest], list[str]]:
    observed: list[Manifest] = []
    applied: list[str] = []
    for manifest in desired:
        current = live.get(_key(manifest))
        if current is not None and is_converged(manifest, current):
            observed.append(current)
            continue
        kind, name = _key(manifest)
        observed.append(await ctx.applier.apply(ctx.kinds[kind], manifest))
        applied.append(f"{kind}/{name}")
    return observed, applied


async def _check_tls(ctx: LiveContext, svc: parse.ParsedService) -> status.Problem | None:
    """What is wrong with the TLS Secret ``svc`` names, if it names one. The Secret is read
    again on every reconcile (there is no watch on Secrets: the operator may only get them),
    so one created or fixed later is picked up by the resync loop at the latest. A Secret the
    operator may not read (403) is reported the same way, and retried the same way."""
    tls = svc.spec.modelfleet.tls
    if tls is None:
        return None
    try:
        summary = await ctx.applier.secret_summary(svc.namespace, tls.secret_name)
    except Forbidden:
        return status.tls_secret_forbidden(svc, tls.secret_name)
    return status.check_tls_secret(svc, summary)


async def reconcile(body: Mapping[str, Any], ctx: LiveContext) -> Outcome:
    """Bring the children and status of one InferenceService to what its spec asks for."""
    started = time.monotonic()
    try:
        outcome = await _reconcile(body, ctx)
    except Exception:
        ctx.metrics.observe("error", started)
        raise
    ctx.metrics.observe(outcome.result, started)
    meta = body.get("metadata") or {}
    ctx.metrics.set_ready(
        str(meta.get("namespace")), str(meta.get("name")), outcome.ready, outcome.reason
    )
    return outcome


async def _reconcile(body: Mapping[str, Any], ctx: LiveContext) -> Outcome:
    try:
        svc = parse.parse(body, ctx.config.trusted_storage_hosts)
    except parse.SpecError as exc:
        invalid = status.invalid_spec_status(body, exc.message, _own_status(body), _now())
        written = await _write_status(ctx, body, invalid)
        ready, reason = _ready(invalid)
        return Outcome(status_written=written, invalid=exc.message, ready=ready, reason=reason)
    desired = desired_children(body, ctx, svc)
    live = await read_children(ctx, svc)
    problem = await _check_tls(ctx, svc)
    held = HELD_WITHOUT_TLS_SECRET if problem is not None else frozenset()
    desired = [manifest for manifest in desired if manifest["kind"] not in held]
    wanted = {_key(manifest) for manifest in desired}
    stale = [obj for key, obj in live.items() if key not in wanted and obj["kind"] not in held]
    deleted = await _prune(ctx, [obj for obj in stale if obj["kind"] in AUTOSCALER_KINDS])
    observed, applied = await _apply(ctx, desired, live)
    deleted += await _prune(ctx, [obj for obj in stale if obj["kind"] not in AUTOSCALER_KINDS])
    observed += [obj for obj in live.values() if obj["kind"] in held]
    new_status = status.build_status(
        svc,
        observed,
        _own_status(body),
        _now(),
        cluster_domain=ctx.config.cluster_domain,
        pods=await read_pods(ctx, svc),
        tls_problem=problem,
    )
    written = await _write_status(ctx, body, new_status)
    ready, reason = _ready(new_status)
    return Outcome(tuple(applied), tuple(deleted), written, ready=ready, reason=reason)


def _ready(new_status: Mapping[str, Any]) -> tuple[str, str]:
    """The status and reason of the Ready condition in ``new_status`` ("Unknown" if absent)."""
    for condition in new_status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown")), str(condition.get("reason", ""))
    return "Unknown", ""


def _own_status(body: Mapping[str, Any]) -> dict[str, Any]:
    """The status fields we own (kopf keeps its progress under ``status.kopf``)."""
    return {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


async def _write_status(ctx: LiveContext, body: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Merge-patch status only if a field we own differs (kopf's own ``status.kopf`` aside)."""
    previous = _own_status(body)
    if previous == dict(new):
        return False
    patch: dict[str, Any] = {key: None for key in previous if key not in new}  # merge-patch removal
    patch.update(new)
    meta = body["metadata"]
    await ctx.applier.patch_status(INFERENCE_SERVICE, meta["namespace"], meta["name"], patch)
    return True
