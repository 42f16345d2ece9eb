"""Semantic checks of an InferenceService: what a schema cannot say, each failing with a
``SpecError`` whose message says what to fix (a KServe-only field, a Knative setting, a bad
storage URI, an image volume for a model that is no image, minReplicas above maxReplicas, two
autoscalers). ``parse.parse`` calls these; pure: no kopf, no Kubernetes client, no I/O.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from modelfleet_operator.oci_ref import parse_oci_uri
from modelfleet_runtime.schemes import scheme_of, spec_schemes

if TYPE_CHECKING:
    from modelfleet_operator.spec import (
        CanarySpec,
        InferenceServiceSpec,
        PredictorSpec,
        VersionPolicySpec,
    )


MAX_NAME = 45
"""Longest InferenceService name: children add up to 17 characters (63-character limit)."""


class SpecError(ValueError):
    """An InferenceService that cannot be served; ``message`` says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_KSERVE_ONLY = {
    "transformer": "transformers are not supported by ModelFleet; pre/post-process in the client",
    "explainer": "explainers are not supported by ModelFleet",
}
_PREDICTOR_FORMATS = (
    "sklearn",
    "xgboost",
    "lightgbm",
    "tensorflow",
    "pytorch",
    "triton",
    "pmml",
    "paddle",
    "huggingface",
    "mlflow",
)
_PREDICTOR_KNATIVE = (
    "containerConcurrency",
    "timeout",
    "batcher",
    "logger",
    "containers",
    "workerSpec",
    "scaleMetricType",
    "autoScaling",
    "deploymentStrategy",
)
_KNATIVE_ANNOTATIONS = (
    "autoscaling.knative.dev/",
    "serving.knative.dev/",
    "networking.knative.dev/",
    "features.knative.dev/",
)
RESERVED_ENV = frozenset(
    f"MODELFLEET_{n}"
    for n in ("MODEL_URI", "NAME", "HOST", "PORT", "MODEL_DIR")
    + ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE")
)
"""Runtime variables the Service, probes and volumes depend on: the user may not set them."""
_METADATA_HOSTS = ("metadata.google.internal", "metadata", "instance-data")


def reject_kserve_only(raw: Mapping[str, Any]) -> None:
    """Reject KServe fields that mean nothing here, naming the field (never silently ignored)."""
    for key, why in _KSERVE_ONLY.items():
        if key in raw:
            raise ValueError(f"spec.{key}: {why}; remove it")
    predictor = raw.get("predictor")
    if not isinstance(predictor, Mapping):
        raise ValueError("spec.predictor: missing; set spec.predictor.model (modelFormat onnx)")
    for key in _PREDICTOR_FORMATS:
        if key in predictor:
            raise ValueError(
                f"spec.predictor.{key}: ModelFleet serves only ONNX models; use "
                "spec.predictor.model with modelFormat.name: onnx"
            )
    for key in _PREDICTOR_KNATIVE:
        if key in predictor:
            raise ValueError(
                f"spec.predictor.{key}: KServe/Knative-only setting with no "
                "meaning in ModelFleet; remove it (batching: spec.modelfleet.batching)"
            )


def check_annotations(annotations: Mapping[str, str]) -> None:
    """Reject Knative-only annotations and KServe's serverless/ModelMesh deployment modes."""
    for key in sorted(annotations):
        if key.startswith(_KNATIVE_ANNOTATIONS):
            raise ValueError(
                f"metadata.annotations[{key}]: Knative-only annotation; ModelFleet "
                "runs without Knative, remove it (autoscaling: spec.predictor)"
            )
    mode = annotations.get("serving.kserve.io/deploymentMode", "RawDeployment")
    if mode not in ("RawDeployment", "Standard"):
        raise ValueError(
            f"metadata.annotations[serving.kserve.io/deploymentMode]: {mode!r} is "
            "not supported; ModelFleet always deploys plain Deployments, remove it"
        )


def check_storage_uri(uri: str, field: str, trusted_hosts: Collection[str] = ()) -> None:
    """Allow only the schemes a storageUri may use (``modelfleet_runtime.schemes``); refuse
    loopback, link-local and cloud metadata hosts (SSRF) unless ``trusted_hosts`` names them."""
    if scheme_of(uri).names_image:  # before urlsplit, whose netloc may hold credentials
        ref = parse_oci_uri(uri, field)
        check_host(ref.hostname, f"{field}: {uri!r}", trusted_hosts)
        return
    parts = urlsplit(uri)
    scheme = scheme_of(uri)
    if not scheme.in_spec:
        raise ValueError(
            f"{field}: scheme {parts.scheme or '(none)'!r} of {uri!r} is not "
            f"supported; use one of {', '.join(s + '://' for s in spec_schemes())}"
        )
    if scheme.netloc in ("bucket", "claim") and not parts.netloc:
        raise ValueError(f"{field}: {uri!r} names no bucket or claim")
    check_host(parts.hostname, f"{field}: {uri!r}", trusted_hosts)


def check_host(host: str | None, what: str, trusted_hosts: Collection[str] = ()) -> None:
    """Refuse loopback (``localhost`` and ``*.localhost`` too), link-local, unspecified and
    cloud metadata hosts, unless ``trusted_hosts`` (the operator's ``trusted_storage_hosts``)
    names the host exactly. Numeric forms that resolvers read as IPv4 (``127.1``,
    ``2852039166``) and IPv4-mapped IPv6 addresses are judged by the address they mean."""
    if not host:
        return
    name = host.lower().rstrip(".")
    if name in {h.lower() for h in trusted_hosts}:
        return
    if name in _METADATA_HOSTS:
        raise ValueError(f"{what} points at a cloud metadata service; use a storage URI")
    addr = _address(name)
    local_name = name == "localhost" or name.endswith(".localhost")  # RFC 6761: loopback
    if local_name or (
        addr is not None and (addr.is_link_local or addr.is_loopback or addr.is_unspecified)
    ):
        raise ValueError(f"{what} points at a link-local or loopback address; use a storage URI")


def _address(host: str) -> IPv4Address | IPv6Address | None:
    """The IP address ``host`` names without a DNS lookup, or None for a name."""
    try:
        addr = ip_address(host)
    except ValueError:
        if not host.replace(".", "").replace("x", "").isalnum() or not host[:1].isdigit():
            return None
        try:  # the legacy forms getaddrinfo accepts: 127.1, 0x7f.1, 2130706433
            return IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def check_semantics(
    name: str,
    spec: InferenceServiceSpec,
    annotations: Mapping[str, str],
    trusted_hosts: Collection[str] = (),
) -> None:
    """Cross-field rules of a schema-valid spec; ``trusted_hosts`` as in ``check_host``."""
    _check_name(name)
    _check_model(spec.predictor)
    for env in spec.model.env:
        if env.name in RESERVED_ENV:
            raise ValueError(
                f"spec.predictor.model.env: {env.name} is set by the operator from "
                "the spec; remove it (storageUri, versionPolicy, ...)"
            )
    check_storage_uri(spec.model.storage_uri, "spec.predictor.model.storageUri", trusted_hosts)
    _check_scaling(spec, annotations)
    mf = spec.modelfleet
    _check_policy(mf.version_policy, "spec.modelfleet.versionPolicy")
    if mf.canary is not None:
        _check_canary(mf.canary, trusted_hosts)
    _check_oci(spec)
    if mf.storage is not None and mf.storage.endpoint is not None:
        ep = urlsplit(mf.storage.endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname:
            raise ValueError("spec.modelfleet.storage.endpoint: must be an http(s):// URL")
        check_host(ep.hostname, "spec.modelfleet.storage.endpoint", trusted_hosts)
    for version, digest in mf.digests.items():
        hexd = digest.removeprefix("sha256:")
        if not version.isdigit() or len(hexd) != 64 or hexd.strip("0123456789abcdef"):
            raise ValueError(
                f"spec.modelfleet.digests[{version}]: needs a version number and "
                "64 lowercase hex digits (optionally prefixed sha256:)"
            )


def _check_name(name: str) -> None:
    ok = name[:1].isalpha() and all(c.isalnum() or c == "-" for c in name) and name[-1:] != "-"
    if not ok or len(name) > MAX_NAME or name.lower() != name:
        raise ValueError(
            f"metadata.name: {name!r} must be a DNS label of at most {MAX_NAME} "
            "characters (lowercase letters, digits, '-', starting with a letter)"
        )


def _check_model(predictor: PredictorSpec) -> None:
    if predictor.model and predictor.onnx:
        raise ValueError("spec.predictor: set either model or onnx, not both")
    model = predictor.model or predictor.onnx
    if model is None:
        raise ValueError(
            "spec.predictor.model: missing; set modelFormat {name: onnx} and storageUri"
        )
    if predictor.model is not None:
        fmt = predictor.model.model_format
        if fmt is None:
            raise ValueError("spec.predictor.model.modelFormat: missing; set {name: onnx}")
        if fmt.name.lower() != "onnx":
            raise ValueError(
                f"spec.predictor.model.modelFormat.name: {fmt.name!r} is not "
                "supported; ModelFleet serves only onnx"
            )


def _check_scaling(spec: InferenceServiceSpec, annotations: Mapping[str, str]) -> None:
    pred = spec.predictor
    if pred.max_replicas is not None and pred.min_replicas > pred.max_replicas:
        raise ValueError(
            f"spec.predictor: minReplicas ({pred.min_replicas}) is greater than "
            f"maxReplicas ({pred.max_replicas}); lower minReplicas or raise maxReplicas"
        )
    asks = []
    if pred.scale_metric is not None:
        by_metric = "hpa" if pred.scale_metric in ("cpu", "memory") else "keda"
        asks.append((f"spec.predictor.scaleMetric {pred.scale_metric!r}", by_metric))
    if spec.modelfleet.autoscaler:
        asks.append(
            (
                f"spec.modelfleet.autoscaler {spec.modelfleet.autoscaler!r}",
                spec.modelfleet.autoscaler,
            )
        )
    kserve_class = annotations.get("serving.kserve.io/autoscalerClass")
    if kserve_class in ("hpa", "keda"):
        asks.append(
            (f"annotation serving.kserve.io/autoscalerClass {kserve_class!r}", kserve_class)
        )
    if len({kind for _, kind in asks}) > 1:
        said = " and ".join(f"{field} ({kind.upper()})" for field, kind in asks)
        raise ValueError(
            f"{said} ask for both HPA and KEDA; pick one: cpu/memory scale with "
            "an HPA, concurrency/rps with KEDA"
        )
    if pred.min_replicas == 0 and spec.autoscaler != "keda":
        raise ValueError(
            "spec.predictor.minReplicas: 0 (scale to zero) needs KEDA; set "
            "scaleMetric to concurrency or rps, and maxReplicas >= 1"
        )


def _check_policy(policy: VersionPolicySpec, field: str) -> None:
    if policy.policy == "specific" and not policy.versions:
        raise ValueError(f"{field}.versions: policy 'specific' needs at least one version")
    if policy.policy != "specific" and policy.versions:
        raise ValueError(f"{field}.versions: only used with policy 'specific'")
    if any(v < 1 for v in policy.versions):
        raise ValueError(f"{field}.versions: version numbers start at 1")


def _check_canary(canary: CanarySpec, trusted_hosts: Collection[str]) -> None:
    if canary.storage_uri is None and canary.version_policy is None:
        raise ValueError("spec.modelfleet.canary: set storageUri and/or versionPolicy")
    if canary.storage_uri is not None:
        check_storage_uri(canary.storage_uri, "spec.modelfleet.canary.storageUri", trusted_hosts)
    if canary.version_policy is not None:
        _check_policy(canary.version_policy, "spec.modelfleet.canary.versionPolicy")


def _check_oci(spec: InferenceServiceSpec) -> None:
    """An image volume needs an image (ImageVolume only with oci:// models), and an oci://
    model is one version, served as version 1."""
    mf = spec.modelfleet
    canary = mf.canary
    stable_uri = spec.model.storage_uri
    tracks = [("spec.modelfleet.versionPolicy", stable_uri, mf.version_policy)]
    if canary is not None:
        field = "canary.versionPolicy" if canary.version_policy else "versionPolicy"
        policy = canary.version_policy or mf.version_policy
        tracks.append((f"spec.modelfleet.{field}", canary.storage_uri or stable_uri, policy))
    for field, uri, policy in tracks:
        if scheme_of(uri).names_image and policy.policy == "specific" and policy.versions != [1]:
            raise ValueError(
                f"{field}: an oci:// model is served as version 1 only; use versions [1] or "
                "policy latest"
            )
    for field, uri in spec.storage_uris.items():
        if mf.oci_delivery == "ImageVolume" and not scheme_of(uri).names_image:
            raise ValueError(
                f"spec.modelfleet.ociDelivery: ImageVolume mounts an oci:// model as an image "
                f"volume, but {field} is {urlsplit(uri).scheme or '(no scheme)'}://; use an "
                "oci:// storageUri, or remove ociDelivery (the runtime then downloads the model)"
            )


def format_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in ("spec", *err["loc"]))
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown field; remove it (see docs/inferenceservice.md)")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
