"""O7's edits, shared by the property test on kmock and the one on the real API server: the
spec fields a user changes most (bounds, autoscaler metric, canary percentage, model URI),
valid and invalid mixed."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

EDITS = st.one_of(
    st.builds(lambda n: {"maxReplicas": n}, st.integers(1, 5)),
    st.builds(lambda n: {"minReplicas": n}, st.integers(0, 3)),
    st.sampled_from([{"scaleMetric": m} for m in ("cpu", "memory", "rps", "concurrency")]),
    st.sampled_from([{"canaryTrafficPercent": p} for p in (None, 0, 30, 100)]),
    st.builds(lambda v: {"model": {"storageUri": f"s3://models/iris-v{v}"}}, st.integers(1, 3)),
)
"""One edit of ``spec.predictor``."""


def ready(body: dict[str, Any]) -> dict[str, Any]:
    """The Ready condition of an InferenceService, or {} when it has none yet."""
    conditions = (body.get("status") or {}).get("conditions") or []
    found: dict[str, Any] = {c["type"]: c for c in conditions}.get("Ready", {})
    return found
