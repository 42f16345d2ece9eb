"""The rollout plan: which Deployments ("tracks") an InferenceService needs, with which model
and how many replicas. Canary maths lives here.

Called by the other render modules; pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelfleet_operator.parse import ParsedService
from modelfleet_operator.spec import InferenceServiceSpec, VersionPolicySpec

STABLE = "stable"
CANARY = "canary"


@dataclass(frozen=True)
class Track:
    """One Deployment of the predictor: the stable one, or the canary."""

    track: str
    deployment: str
    storage_uri: str
    version_policy: VersionPolicySpec
    min_replicas: int
    max_replicas: int
    percent: int
    """Share of traffic (exact with the Gateway API, else approximated by pod counts)."""


def split_replicas(total: int, percent: int) -> tuple[int, int]:
    """Split ``total`` replicas into (stable, canary) for a canary ``percent``.

    canary = round-half-up(total * percent / 100), clamped so that both models keep at least
    one replica while 0 < percent < 100 (1..total-1). The sum stays ``total``, except that a
    single replica becomes 1 + 1 (both models must run). 0 keeps everything on stable, 100
    everything on the canary. The Service spreads requests per pod, so the canary's share of
    traffic is canary / (stable + canary); the Gateway API route is exact.
    """
    if percent <= 0 or total == 0:
        return total, 0
    if percent >= 100:
        return 0, total
    canary = max(1, (total * percent + 50) // 100)
    if total >= 2:
        canary = min(canary, total - 1)
    return max(1, total - canary), canary


def deployment_name(name: str, track: str = STABLE) -> str:
    """``<name>-predictor`` for stable, ``<name>-predictor-canary`` for the canary."""
    return f"{name}-predictor" if track == STABLE else f"{name}-predictor-canary"


def plan(svc: ParsedService) -> list[Track]:
    """The tracks to render, stable first."""
    spec = svc.spec
    lo, hi = spec.predictor.min_replicas, spec.max_replicas
    pct = spec.canary_percent
    stable = _stable(svc.name, spec, lo, hi)
    if pct is None or pct == 0:
        return [stable]
    canary_uri, canary_policy = _canary_model(spec)
    if pct == 100:  # promotion: the one Deployment rolls to the canary's model
        return [Track(STABLE, stable.deployment, canary_uri, canary_policy, lo, hi, 100)]
    (s_lo, c_lo), (s_hi, c_hi) = split_replicas(lo, pct), split_replicas(hi, pct)
    return [
        Track(
            STABLE,
            stable.deployment,
            stable.storage_uri,
            stable.version_policy,
            s_lo,
            max(s_hi, s_lo, 1),
            100 - pct,
        ),
        Track(
            CANARY,
            deployment_name(svc.name, CANARY),
            canary_uri,
            canary_policy,
            c_lo,
            max(c_hi, c_lo, 1),
            pct,
        ),
    ]


def _stable(name: str, spec: InferenceServiceSpec, lo: int, hi: int) -> Track:
    policy = spec.modelfleet.version_policy
    return Track(STABLE, deployment_name(name), spec.model.storage_uri, policy, lo, hi, 100)


def _canary_model(spec: InferenceServiceSpec) -> tuple[str, VersionPolicySpec]:
    canary = spec.modelfleet.canary
    assert canary is not None  # canary_percent is None without it
    uri = canary.storage_uri or spec.model.storage_uri
    return uri, canary.version_policy or spec.modelfleet.version_policy
