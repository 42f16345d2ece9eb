"""The InferenceService spec: pydantic models, semantic checks and ``parse()``.

The models follow KServe's ``serving.kserve.io/v1beta1`` InferenceService wherever the concept
is the same, so a KServe ONNX YAML applies after changing only ``apiVersion``. ModelFleet's own
fields live in one clearly named place, ``spec.modelfleet``. The CRD's OpenAPI schema is
generated from these models (``crd.py``). Called by the operator's handlers and by
``modelfleet render``; pure: no kopf, no Kubernetes client, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

ScaleMetric = Literal["cpu", "memory", "concurrency", "rps"]
Autoscaler = Literal["hpa", "keda"]
MAX_NAME = 45
"""Longest InferenceService name: children add up to 17 characters (63-character limit)."""
PRESERVE: JsonDict = {"x-kubernetes-preserve-unknown-fields": True}


class SpecError(ValueError):
    """An InferenceService that cannot be served; ``message`` says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Model(BaseModel):
    """Base: camelCase names in YAML, unknown fields rejected (never silently ignored)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


class EnvVar(BaseModel):
    """A Kubernetes EnvVar (``value`` or ``valueFrom``), passed to the container as given."""

    model_config = ConfigDict(extra="allow", json_schema_extra=PRESERVE)
    name: str = Field(min_length=1)
    """Variable name."""


class ModelFormat(_Model):
    """KServe's ``modelFormat``; only ``onnx`` is served."""

    name: str
    """Model format name; must be ``onnx``."""
    version: str | None = None
    """Format version (informational)."""


class ModelSpec(_Model):
    """KServe's ``predictor.model`` (and the ``predictor.onnx`` shortcut)."""

    model_format: ModelFormat | None = None
    """KServe model format; ``{name: onnx}``. Implied by the ``predictor.onnx`` shortcut."""
    storage_uri: str
    """s3://, gs://, https://, file:// or pvc://<claim>/<path>: one .onnx file or a folder of
    numbered version folders."""
    protocol_version: Literal["v1", "v2"] = "v2"
    """Open Inference Protocol (v2) or TF-Serving style (v1); the runtime serves both."""
    runtime_version: str | None = None
    """Tag of the runtime image to run (KServe's meaning); default: the operator's image."""
    resources: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE)
    """Container resources (requests/limits); default: the operator's defaults."""
    env: list[EnvVar] = Field(default_factory=list)
    """Extra environment variables for the runtime container."""


class VersionPolicy(_Model):
    """Which model versions a pod loads (TF Serving's model_version_policy)."""

    policy: Literal["latest", "all", "specific"] = "latest"
    """'latest' (newest numVersions), 'all', or 'specific' (exactly ``versions``)."""
    num_versions: int = Field(default=1, ge=1)
    """How many of the newest versions 'latest' keeps loaded."""
    versions: list[int] = Field(default_factory=list)
    """Version numbers for 'specific'."""


class Batching(_Model):
    """Dynamic batching in the runtime (Triton's dynamic_batching)."""

    max_batch_size: int = Field(ge=1)
    """Largest batch formed along the first dimension."""
    max_queue_delay_microseconds: int = Field(default=500, ge=0)
    """How long a request may wait for others to fill a batch."""
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    """Batch sizes sent at once when reached."""


class SecretRef(_Model):
    """A reference to a Secret in the InferenceService's namespace; never read by the operator."""

    name: str = Field(min_length=1)
    """Secret name."""


class StorageSpec(_Model):
    """Storage access: endpoint and credentials by Secret reference."""

    secret_ref: SecretRef | None = None
    """Secret holding the credentials (s3: keys below; gs: a service-account JSON key)."""
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    """Key in the Secret holding the S3 access key id."""
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"
    """Key in the Secret holding the S3 secret access key."""
    gcs_credentials_key: str = "key.json"
    """Key in the Secret holding the GCS service-account JSON (gs:// only)."""
    endpoint: str | None = None
    """S3-compatible endpoint URL (MinIO, SeaweedFS, Ceph); default AWS."""
    region: str | None = None
    """S3 region."""
    addressing_style: Literal["auto", "path", "virtual"] | None = None
    """S3 bucket addressing; S3-compatible servers usually want 'path'."""


class CanarySpec(_Model):
    """The canary model served next to the stable one (``predictor.canaryTrafficPercent``)."""

    storage_uri: str | None = None
    """The canary's storageUri; default: the stable one (with another version policy)."""
    version_policy: VersionPolicy | None = None
    """The canary's version policy; default: the stable one."""


class AuthSpec(_Model):
    """Bearer-token authentication for the endpoint."""

    secret_ref: SecretRef
    """Secret holding the accepted tokens, one per line; mounted as a file."""
    key: str = "tokens"
    """Key in the Secret holding the tokens."""


class RuntimeSpec(_Model):
    """Overrides for the runtime container."""

    image: str | None = None
    """Runtime image to run instead of the operator's default (pin by digest)."""


class ModelFleetSpec(_Model):
    """ModelFleet's own fields: everything KServe has no equivalent for."""

    version_policy: VersionPolicy = Field(default_factory=VersionPolicy)
    """Which versions pods load; default latest 1."""
    digests: dict[str, str] = Field(default_factory=dict)
    """Expected sha256 of model.onnx per version number, e.g. {"1": "sha256:ab12..."}."""
    batching: Batching | None = None
    """Dynamic batching; off when absent."""
    storage: StorageSpec | None = None
    """Storage endpoint and credentials by Secret reference."""
    runtime: RuntimeSpec | None = None
    """Runtime image override."""
    canary: CanarySpec | None = None
    """The canary model; traffic share is ``predictor.canaryTrafficPercent``."""
    autoscaler: Autoscaler | None = None
    """'hpa' or 'keda'; default inferred from scaleMetric (cpu/memory: hpa, else keda)."""
    auth: AuthSpec | None = None
    """Endpoint authentication; off when absent."""


class PredictorSpec(_Model):
    """KServe's ``spec.predictor`` (ONNX only; no custom containers)."""

    model: ModelSpec | None = None
    """The model (KServe's ``predictor.model``)."""
    onnx: ModelSpec | None = None
    """KServe's ``predictor.onnx`` shortcut; same as ``model`` with modelFormat onnx."""
    min_replicas: int = Field(default=1, ge=0)
    """Fewest replicas; 0 only with KEDA."""
    max_replicas: int | None = Field(default=None, ge=1)
    """Most replicas; default minReplicas (no autoscaler)."""
    scale_metric: ScaleMetric | None = None
    """cpu or memory (HPA); concurrency or rps (KEDA). Default cpu."""
    scale_target: int | None = Field(default=None, ge=1)
    """Target per pod: % utilisation (cpu/memory), in-flight requests, or requests/s."""
    canary_traffic_percent: int | None = Field(default=None, ge=0, le=100)
    """Share of traffic for spec.modelfleet.canary: 0 rolls back, 100 or absent promotes."""
    service_account_name: str | None = None
    """Pod service account (e.g. for workload identity to storage)."""
    node_selector: dict[str, str] | None = None
    """Pod nodeSelector."""
    tolerations: list[dict[str, Any]] | None = Field(default=None, json_schema_extra=PRESERVE)
    """Pod tolerations."""
    affinity: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE)
    """Pod affinity."""


class InferenceServiceSpec(_Model):
    """``spec`` of an InferenceService."""

    predictor: PredictorSpec
    """The predictor (KServe)."""
    modelfleet: ModelFleetSpec = Field(default_factory=ModelFleetSpec)
    """ModelFleet's own settings."""

    @property
    def model(self) -> ModelSpec:
        """The stable model, from ``predictor.model`` or the ``predictor.onnx`` shortcut."""
        model = self.predictor.model or self.predictor.onnx
        assert model is not None  # guaranteed by check_semantics
        return model

    @property
    def max_replicas(self) -> int:
        """maxReplicas with its default (minReplicas, at least 1)."""
        return self.predictor.max_replicas or max(self.predictor.min_replicas, 1)

    @property
    def scale_metric(self) -> ScaleMetric:
        """The scale metric with its default (cpu)."""
        return self.predictor.scale_metric or "cpu"

    @property
    def autoscaler(self) -> Autoscaler | None:
        """The autoscaler that owns replicas, or None for a fixed replica count."""
        if self.max_replicas <= self.predictor.min_replicas and self.predictor.min_replicas:
            return None
        if self.modelfleet.autoscaler:
            return self.modelfleet.autoscaler
        return "hpa" if self.scale_metric in ("cpu", "memory") else "keda"

    @property
    def canary_percent(self) -> int | None:
        """Traffic % of the canary Deployment: None without a canary; absent field promotes."""
        if self.modelfleet.canary is None:
            return None
        pct = self.predictor.canary_traffic_percent
        return 100 if pct is None else pct


@dataclass(frozen=True)
class ParsedService:
    """A validated InferenceService: identity plus spec."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: InferenceServiceSpec
    annotations: Mapping[str, str]


# --- Semantic checks: what a schema cannot say, each with a message saying what to fix -----

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
    f"MODELFLEET_{n}" for n in ("MODEL_URI", "NAME", "HOST", "PORT", "MODEL_DIR")
)
"""Runtime variables the Service, probes and volumes depend on: the user may not set them."""
SCHEMES = ("s3", "gs", "https", "file", "pvc")
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


def check_storage_uri(uri: str, field: str) -> None:
    """Allow only the supported schemes; refuse link-local and cloud metadata addresses (SSRF)."""
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"{field}: scheme {parts.scheme or '(none)'!r} of {uri!r} is not "
            f"supported; use one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    if parts.scheme in ("s3", "gs", "pvc") and not parts.netloc:
        raise ValueError(f"{field}: {uri!r} names no bucket or claim")
    check_host(parts.hostname, f"{field}: {uri!r}")


def check_host(host: str | None, what: str) -> None:
    """Refuse link-local, loopback and cloud metadata hosts."""
    if not host:
        return
    if host.lower() in _METADATA_HOSTS:
        raise ValueError(f"{what} points at a cloud metadata service; use a storage URI")
    try:
        addr = ip_address(host)
    except ValueError:
        return
    if addr.is_link_local or addr.is_loopback or addr.is_unspecified:
        raise ValueError(f"{what} points at a link-local or loopback address; use a storage URI")


def check_semantics(name: str, spec: InferenceServiceSpec, annotations: Mapping[str, str]) -> None:
    """Cross-field rules of a schema-valid spec."""
    _check_name(name)
    _check_model(spec.predictor)
    for env in spec.model.env:
        if env.name in RESERVED_ENV:
            raise ValueError(
                f"spec.predictor.model.env: {env.name} is set by the operator from "
                "the spec; remove it (storageUri, versionPolicy, ...)"
            )
    check_storage_uri(spec.model.storage_uri, "spec.predictor.model.storageUri")
    _check_scaling(spec, annotations)
    mf = spec.modelfleet
    _check_policy(mf.version_policy, "spec.modelfleet.versionPolicy")
    if mf.canary is not None:
        _check_canary(mf.canary)
    if mf.storage is not None and mf.storage.endpoint is not None:
        ep = urlsplit(mf.storage.endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname:
            raise ValueError("spec.modelfleet.storage.endpoint: must be an http(s):// URL")
        check_host(ep.hostname, "spec.modelfleet.storage.endpoint")
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


def _check_policy(policy: VersionPolicy, field: str) -> None:
    if policy.policy == "specific" and not policy.versions:
        raise ValueError(f"{field}.versions: policy 'specific' needs at least one version")
    if policy.policy != "specific" and policy.versions:
        raise ValueError(f"{field}.versions: only used with policy 'specific'")
    if any(v < 1 for v in policy.versions):
        raise ValueError(f"{field}.versions: version numbers start at 1")


def _check_canary(canary: CanarySpec) -> None:
    if canary.storage_uri is None and canary.version_policy is None:
        raise ValueError("spec.modelfleet.canary: set storageUri and/or versionPolicy")
    if canary.storage_uri is not None:
        check_storage_uri(canary.storage_uri, "spec.modelfleet.canary.storageUri")
    if canary.version_policy is not None:
        _check_policy(canary.version_policy, "spec.modelfleet.canary.versionPolicy")


def _format_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in ("spec", *err["loc"]))
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown field; remove it (see docs/inferenceservice.md)")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse(body: Mapping[str, Any]) -> ParsedService:
    """Validate an InferenceService body; raise ``SpecError`` saying what to fix."""
    meta = body.get("metadata") or {}
    raw = body.get("spec")
    if not isinstance(raw, Mapping):
        raise SpecError("spec: missing; an InferenceService needs spec.predictor")
    annotations = dict(meta.get("annotations") or {})
    try:
        reject_kserve_only(raw)
        check_annotations(annotations)
        spec = InferenceServiceSpec.model_validate(raw)
        check_semantics(str(meta.get("name", "")), spec, annotations)
    except ValidationError as exc:
        raise SpecError(_format_error(exc)) from None
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
