"""The InferenceService CustomResourceDefinition, its OpenAPI v3 schema generated from the
pydantic spec models so the two never drift.

Kubernetes wants a *structural* schema: every $ref inlined, no anyOf-with-null (optional
fields are simply not required), a type on every node, and
``x-kubernetes-preserve-unknown-fields`` where the content is free-form (resources, env).
Called by ``modelfleet crd`` and by the test that keeps ``crds/`` up to date.
"""

from __future__ import annotations

from typing import Any

import yaml

from modelfleet_operator import labels
from modelfleet_operator.kinds import CRD_NAME, GROUP, INFERENCE_SERVICE, SHORT_NAMES, SINGULAR
from modelfleet_operator.spec import InferenceServiceSpec

_DROP = ("title", "default", "$defs", "propertyNames")

RULES: dict[str, list[dict[str, str]]] = {
    # CEL rules (x-kubernetes-validations) by pydantic model: what the API server itself can
    # refuse at `kubectl apply`, each the same rule as in checks.py, which still runs (for
    # objects stored before a rule existed, and for `modelfleet render`).
    "InferenceServiceSpec": [
        {
            "rule": "!has(self.modelfleet) || !has(self.modelfleet.autoscaler)"
            " || !has(self.predictor.scaleMetric)"
            " || (self.predictor.scaleMetric in ['cpu', 'memory'])"
            " == (self.modelfleet.autoscaler == 'hpa')",
            "message": "spec.predictor.scaleMetric and spec.modelfleet.autoscaler ask for both"
            " HPA and KEDA; pick one: cpu/memory scale with an HPA, concurrency/rps with KEDA",
            "fieldPath": ".modelfleet.autoscaler",
            "reason": "FieldValueInvalid",
        }
    ],
    "PredictorSpec": [
        {
            "rule": "!has(self.maxReplicas) || !has(self.minReplicas)"
            " || self.minReplicas <= self.maxReplicas",
            "message": "minReplicas is greater than maxReplicas; lower minReplicas or raise"
            " maxReplicas",
            "fieldPath": ".minReplicas",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!(has(self.model) && has(self.onnx))",
            "message": "set either model or onnx, not both",
        },
    ],
    "CanarySpec": [
        {
            "rule": "has(self.storageUri) || has(self.versionPolicy)",
            "message": "a canary needs storageUri and/or versionPolicy",
        }
    ],
    "ModelCacheSpec": [
        {
            "rule": "!has(self.enabled) || self.enabled"
            " || (!has(self.claimName) && !has(self.sizeLimit))",
            "message": "enabled is false but claimName or sizeLimit is set: drop one",
            "fieldPath": ".enabled",
            "reason": "FieldValueInvalid",
        }
    ],
    "VersionPolicySpec": [
        {
            "rule": "!has(self.policy) || self.policy != 'specific'"
            " || (has(self.versions) && size(self.versions) > 0)",
            "message": "policy 'specific' needs at least one version in versions",
            "fieldPath": ".versions",
            "reason": "FieldValueRequired",
        },
        {
            "rule": "(has(self.policy) && self.policy == 'specific')"
            " || !has(self.versions) || size(self.versions) == 0",
            "message": "versions is only used with policy 'specific'",
            "fieldPath": ".versions",
            "reason": "FieldValueForbidden",
        },
    ],
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve $refs, drop null branches, and keep only what a structural schema allows."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        model = node["$ref"].rsplit("/", 1)[-1]
        target = _inline(defs[model], defs)
        if model in RULES:
            target["x-kubernetes-validations"] = [dict(rule) for rule in RULES[model]]
        return {**target, **{k: v for k, v in node.items() if k in ("description",)}}
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            merged = {k: v for k, v in node.items() if k != "anyOf"}
            return _inline({**branches[0], **merged}, defs)
    out = {k: _inline(v, defs) for k, v in node.items() if k not in _DROP}
    if out.get("additionalProperties") is True:
        del out["additionalProperties"]
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("additionalProperties") is False:
        # Keep unknown fields (no pruning) so that the operator sees them and rejects the spec
        # with InvalidSpec naming the field, instead of the API server dropping them silently.
        del out["additionalProperties"]
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    return out


def spec_schema() -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``spec``."""
    raw = InferenceServiceSpec.model_json_schema(by_alias=True, mode="validation")
    schema = dict(_inline(raw, raw.get("$defs", {})))
    schema["x-kubernetes-validations"] = [dict(r) for r in RULES["InferenceServiceSpec"]]
    return schema


def _status_schema() -> dict[str, Any]:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _columns() -> list[dict[str, Any]]:
    return [
        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Versions", "type": "string", "jsonPath": ".status.modelVersions"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Canary", "type": "integer", "jsonPath": ".status.canaryTrafficPercent"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def build_crd() -> dict[str, Any]:
    """The whole CRD object."""
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": _status_schema(),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {labels.PART_OF: labels.PART_OF_VALUE}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": INFERENCE_SERVICE.kind,
                "listKind": f"{INFERENCE_SERVICE.kind}List",
                "plural": INFERENCE_SERVICE.plural,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["modelfleet"],
            },
            "versions": [
                {
                    "name": INFERENCE_SERVICE.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _columns(),
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML, exactly as committed under ``crds/``."""
    header = (
        "# Generated by `modelfleet crd` from operator/modelfleet_operator/spec.py; do not edit.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
