"""Standard labels on every child and the selectors that find them.

Used by ``render`` (labels and pod selectors) and by the live half (watching children by
label). Pure: no kopf, no Kubernetes client.
"""

from __future__ import annotations

from modelfleet_operator.kinds import GROUP

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
TRACK = f"{GROUP}/track"
"""Label key: 'stable' or 'canary', which Deployment a predictor pod belongs to."""
INFERENCE_SERVICE_LABEL = f"{GROUP}/inferenceservice"
"""Label key: the name of the InferenceService a child belongs to (``kinds.INFERENCE_SERVICE``
is the kind itself)."""

APP_NAME = "modelfleet-runtime"
PART_OF_VALUE = "modelfleet"
MANAGER = "modelfleet-operator"
PREDICTOR = "predictor"


def managed_selector() -> dict[str, str]:
    """Labels on every child of every InferenceService (for the operator's watches)."""
    return {PART_OF: PART_OF_VALUE, MANAGED_BY: MANAGER}


def instance_selector(name: str) -> dict[str, str]:
    """Labels on every child of one InferenceService."""
    return {**managed_selector(), INSTANCE: name}


def pod_selector(name: str, track: str | None = None) -> dict[str, str]:
    """matchLabels for predictor pods of one InferenceService (one track, or both)."""
    sel = {NAME: APP_NAME, INSTANCE: name, COMPONENT: PREDICTOR}
    if track is not None:
        sel[TRACK] = track
    return sel


def child_labels(name: str, component: str = PREDICTOR, track: str | None = None) -> dict[str, str]:
    """Full label set for a child object (and its pod template)."""
    labels = {
        NAME: APP_NAME,
        INSTANCE: name,
        COMPONENT: component,
        PART_OF: PART_OF_VALUE,
        MANAGED_BY: MANAGER,
        INFERENCE_SERVICE_LABEL: name,
    }
    if track is not None:
        labels[TRACK] = track
    return labels
