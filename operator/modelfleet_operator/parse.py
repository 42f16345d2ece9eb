"""An InferenceService body read into a ``ParsedService``: identity from its metadata, spec
validated against the models (``spec.py``) and the semantic checks (``checks.py``).

``parse()`` is the first step of the live half's reconcile (``reconcile.py``) and of
``modelfleet render``; every failure is one ``SpecError`` whose message says what to fix. Pure:
no kopf, no Kubernetes client, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelfleet_operator.checks import SpecError as SpecError
from modelfleet_operator.checks import (
    check_annotations,
    check_semantics,
    format_error,
    reject_kserve_only,
)
from modelfleet_operator.spec import InferenceServiceSpec


@dataclass(frozen=True)
class ParsedService:
    """A validated InferenceService: identity plus spec."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: InferenceServiceSpec
    annotations: Mapping[str, str]


def parse(body: Mapping[str, Any], trusted_hosts: Collection[str] = ()) -> ParsedService:
    """Validate an InferenceService body; raise ``SpecError`` saying what to fix.
    ``trusted_hosts``: the operator's ``trusted_storage_hosts`` (see ``checks.check_host``)."""
    meta = body.get("metadata") or {}
    raw = body.get("spec")
    if not isinstance(raw, Mapping):
        raise SpecError("spec: missing; an InferenceService needs spec.predictor")
    annotations = dict(meta.get("annotations") or {})
    try:
        reject_kserve_only(raw)
        check_annotations(annotations)
        spec = InferenceServiceSpec.model_validate(raw)
        check_semantics(str(meta.get("name", "")), spec, annotations, trusted_hosts)
    except ValidationError as exc:
        raise SpecError(format_error(exc)) from None
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    return ParsedService(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace") or "default"),
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 0),
        spec=spec,
        annotations=annotations,
    )
