"""The InferenceService status, built purely from the spec, the live children and the
previous status.

Conditions follow metav1.Condition (type, status, reason, message, lastTransitionTime,
observedGeneration); ``lastTransitionTime`` only moves when a condition's status flips, so an
unchanged world yields an identical status (and the live half writes nothing). Called by the
operator's reconcile; pure: no kopf, no client, no clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelfleet_operator import predictor_pods
from modelfleet_operator.parse import ParsedService
from modelfleet_operator.render import tls
from modelfleet_operator.render.plan import CANARY, STABLE, Track, plan
from modelfleet_operator.spec import VersionPolicySpec

Observed = Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]]
"""Live children: a mapping of name to object, or just the objects."""


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    ctype: str,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """One metav1.Condition; keeps the previous lastTransitionTime unless the status flipped."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    old = _find(previous, ctype)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or _timestamp(now),
        "observedGeneration": generation,
    }


def _find(previous: Mapping[str, Any] | None, ctype: str) -> Mapping[str, Any] | None:
    for cond in (previous or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == ctype:
            return cond
    return None


def _deployments(observed: Observed) -> dict[str, Mapping[str, Any]]:
    objects = observed.values() if isinstance(observed, Mapping) else observed
    return {
        str(o.get("metadata", {}).get("name")): o for o in objects if o.get("kind") == "Deployment"
    }


def deployment_health(dep: Mapping[str, Any] | None) -> tuple[bool | None, str, str]:
    """(ready, reason, message) of one Deployment from its live status."""
    if dep is None:
        return False, "Creating", "the Deployment does not exist yet"
    st = dep.get("status") or {}
    conds = {c.get("type"): c for c in st.get("conditions") or [] if isinstance(c, Mapping)}
    progressing = conds.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return False, "RolloutStalled", str(progressing.get("message") or "rollout stalled")
    spec = dep.get("spec") or {}
    want = spec.get("replicas", 1)
    gen_ok = st.get("observedGeneration", 0) >= (dep.get("metadata") or {}).get("generation", 0)
    updated, ready = st.get("updatedReplicas", 0), st.get("readyReplicas", 0)
    available = (conds.get("Available") or {}).get("status") == "True"
    if gen_ok and available and updated >= want and ready >= want and ready >= 1:
        return True, "MinimumReplicasAvailable", f"{ready} of {want} replicas ready"
    if want == 0:
        return True, "ScaledToZero", "no replicas wanted (scaled to zero)"
    return False, "RolloutInProgress", f"{ready} of {want} replicas ready, {updated} updated"


def policy_summary(policy: VersionPolicySpec) -> str:
    """'latest 1', 'all' or '1,3': the versions column."""
    if policy.policy == "latest":
        return f"latest {policy.num_versions}"
    if policy.policy == "all":
        return "all"
    return ",".join(str(v) for v in policy.versions)


def _component(
    track: Track,
    dep: Mapping[str, Any] | None,
    ok: bool | None,
    previous: Mapping[str, Any] | None,
    pods: list[predictor_pods.Pod],
) -> dict[str, Any]:
    st = (dep or {}).get("status") or {}
    prev = ((previous or {}).get("components") or {}).get(track.track) or {}
    last_ready = track.storage_uri if ok else prev.get("latestReadyStorageUri")
    cold_start = predictor_pods.last_cold_start_seconds(pods)
    if cold_start is None:  # no pod ready now (scaled to zero, rolling): keep the last figure
        cold_start = prev.get("lastColdStartSeconds")
    out = {
        "deployment": track.deployment,
        "storageUri": track.storage_uri,
        "versions": policy_summary(track.version_policy),
        "trafficPercent": track.percent,
        "replicas": int(st.get("replicas", 0)),
        "readyReplicas": int(st.get("readyReplicas", 0)),
    }
    if last_ready:  # the model that last served, kept while a new one rolls out or stalls
        out["latestReadyStorageUri"] = last_ready
    if cold_start is not None:
        out["lastColdStartSeconds"] = cold_start
    return out


@dataclass(frozen=True)
class SecretSummary:
    """What the operator knows of a Secret: its type and how many keys it holds, never a value
    (``kube.KubeClient.secret_summary`` asks the API server for that much only)."""

    type: str
    keys: int


@dataclass(frozen=True)
class Problem:
    """Why an InferenceService cannot be served as its spec asks, for its Ready condition."""

    reason: str
    message: str


TLS_SECRET_TYPE = "kubernetes.io/tls"


_KEEP = "the predictor's Deployment and Service are left as they are"
"""What the operator does while the TLS Secret is missing, unfit or unreadable."""


def check_tls_secret(svc: ParsedService, secret: SecretSummary | None) -> Problem | None:
    """What is wrong with the TLS Secret ``svc`` names (``secret``: None when it does not
    exist), or None. A kubernetes.io/tls Secret always holds tls.crt and tls.key (the API
    server refuses one without them); with clientAuth Require it also needs ca.crt, which a
    Secret of two keys cannot hold. Until it is fixed, pods that still serve are left alone."""
    spec = tls.tls_of(svc)
    if spec is None:
        return None
    name = spec.secret_name
    if secret is None:
        return Problem(
            "TLSSecretNotFound",
            f"Secret {name!r} (spec.modelfleet.tls.secretName) does not exist in namespace "
            f"{svc.namespace!r}; create a {TLS_SECRET_TYPE} Secret with tls.crt and tls.key "
            f"(a cert-manager Certificate does); until then {_KEEP}",
        )
    if secret.type != TLS_SECRET_TYPE:
        return Problem(
            "TLSSecretInvalid",
            f"Secret {name!r} has type {secret.type!r}; spec.modelfleet.tls needs a "
            f"{TLS_SECRET_TYPE} Secret (keys tls.crt and tls.key); until then {_KEEP}",
        )
    if spec.client_auth == "Require" and secret.keys < 3:
        return Problem(
            "TLSSecretInvalid",
            f"Secret {name!r} holds no ca.crt: clientAuth Require needs the CA that signs "
            f"client certificates under that key (cert-manager writes it); until then {_KEEP}",
        )
    return None


def tls_secret_forbidden(svc: ParsedService, name: str) -> Problem:
    """The TLS Secret ``name`` could not be read: the operator's role has no ``get`` on
    Secrets in the namespace of ``svc`` (the chart grants it wherever the operator watches)."""
    return Problem(
        "TLSSecretForbidden",
        f"the operator may not read Secret {name!r} in namespace {svc.namespace!r} (403 "
        "Forbidden): its role needs get on secrets there, as the chart's ClusterRole or Role "
        f"grants; until then {_KEEP}",
    )


def _tls_condition(
    svc: ParsedService, problem: Problem | None, previous: Mapping[str, Any] | None, now: datetime
) -> list[dict[str, Any]]:
    """The TLSSecretReady condition, for an InferenceService with TLS only."""
    spec = tls.tls_of(svc)
    if spec is None:
        return []
    if problem is not None:
        ok, reason, message = False, problem.reason, problem.message
    else:
        ok, reason = True, "SecretFound"
        message = f"Secret {spec.secret_name!r} is mounted at {tls.TLS_DIR}"
    return [condition("TLSSecretReady", ok, reason, message, svc.generation, previous, now)]


def build_status(
    svc: ParsedService,
    observed_children: Observed,
    previous: Mapping[str, Any] | None,
    now: datetime,
    cluster_domain: str = "cluster.local",
    pods: Iterable[predictor_pods.Pod] = (),
    tls_problem: Problem | None = None,
) -> dict[str, Any]:
    """The whole status of ``svc`` given its live children, its predictor pods (slim or
    whole, see ``predictor_pods``) and the previous status.

    Pass ``cluster_domain=config.cluster_domain`` for the url, and what
    :func:`check_tls_secret` found for an InferenceService with TLS (its Ready condition then
    says so first)."""
    deps, pods = _deployments(observed_children), list(pods)
    tracks, gen = plan(svc), svc.generation
    conds, components = [], {}
    ready_all, reason, message = True, "Ready", "all predictor replicas ready"
    if tls_problem is not None:
        ready_all, reason, message = False, tls_problem.reason, tls_problem.message
    for track in tracks:
        track_pods = predictor_pods.of_track(pods, track.track)
        ok, why, msg = deployment_health(deps.get(track.deployment))
        refused = predictor_pods.unschedulable(track_pods) if not ok else None
        if refused is not None:  # say why, in the scheduler's words
            why = "PodUnschedulable" if why == "RolloutInProgress" else why
            msg = f"{msg}; {refused}"
        ctype = "PredictorReady" if track.track == STABLE else "CanaryReady"
        conds.append(condition(ctype, ok, why, msg, gen, previous, now))
        dep = deps.get(track.deployment)
        components[track.track] = _component(track, dep, ok, previous, track_pods)
        if not ok and ready_all:
            ready_all, reason, message = False, why, f"{track.deployment}: {msg}"
    ready = condition("Ready", ready_all, reason, message, gen, previous, now)
    conds += _tls_condition(svc, tls_problem, previous, now)
    canary = next((t for t in tracks if t.track == CANARY), None)
    return {
        "observedGeneration": gen,
        "url": f"{tls.url_scheme(svc)}://{svc.name}.{svc.namespace}.svc.{cluster_domain}",
        "conditions": [ready, *conds],
        "modelVersions": " | ".join(policy_summary(t.version_policy) for t in tracks),
        "components": components,
        "replicas": sum(c["readyReplicas"] for c in components.values()),
        "canaryTrafficPercent": canary.percent if canary else 0,
    }


def invalid_spec_status(
    svc_or_body: ParsedService | Mapping[str, Any],
    message: str,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """Ready=False, reason InvalidSpec, with ``message`` saying what to fix. Everything else
    of the previous status (url, components) is kept: the old children still serve."""
    if isinstance(svc_or_body, ParsedService):
        gen = svc_or_body.generation
    else:
        gen = int((svc_or_body.get("metadata") or {}).get("generation") or 0)
    out = {k: v for k, v in (previous or {}).items() if k not in ("conditions", "kopf")}
    ready = condition("Ready", False, "InvalidSpec", message, gen, previous, now)
    out.update({"observedGeneration": gen, "conditions": [ready]})
    return out
