"""The InferenceService spec: pydantic models.

The models follow KServe's ``serving.kserve.io/v1beta1`` InferenceService wherever the concept
is the same, so a KServe ONNX YAML applies after changing only ``apiVersion``. ModelFleet's own
fields live in one clearly named place, ``spec.modelfleet``. The CRD's OpenAPI schema is
generated from these models (``crd.py``); ``parse.py`` validates a body against them into a
``ParsedService``. Pure: no kopf, no Kubernetes client, no I/O.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from modelfleet_runtime.config import VersionPolicy

ScaleMetric = Literal["cpu", "memory", "concurrency", "rps"]
Autoscaler = Literal["hpa", "keda"]
OciDelivery = Literal["Auto", "Pull", "ImageVolume"]
ClientAuth = Literal["None", "Require"]
PRESERVE: JsonDict = {"x-kubernetes-preserve-unknown-fields": True}


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
    numbered version folders; or oci://host[:port]/repo[:tag|@sha256:<hex>], a model pushed
    to an OCI registry (served as version 1; see spec.modelfleet.ociDelivery)."""
    protocol_version: Literal["v1", "v2", "grpc-v2"] = "v2"
    """Open Inference Protocol over HTTP (v2) or gRPC (grpc-v2, port 8081), or TF-Serving style
    (v1): KServe's choice of one; the runtime serves all three whichever is named."""
    runtime_version: str | None = None
    """Tag of the runtime image to run (KServe's meaning); default: the operator's image."""
    resources: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE)
    """Container resources (requests/limits); default: the operator's defaults."""
    env: list[EnvVar] = Field(default_factory=list)
    """Extra environment variables for the runtime container."""


class VersionPolicySpec(_Model):
    """Which model versions a pod loads (TF Serving's model_version_policy): the spec's
    ``versionPolicy`` object. Its ``policy`` is the runtime's own ``config.VersionPolicy``
    literal, which the operator renders into ``MODELFLEET_VERSION_POLICY``: one list of policy
    names, so the CRD accepts exactly what the runtime serves."""

    policy: VersionPolicy = "latest"
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
    version_policy: VersionPolicySpec | None = None
    """The canary's version policy; default: the stable one."""


class AuthSpec(_Model):
    """Bearer-token authentication for the endpoint."""

    secret_ref: SecretRef
    """Secret holding the accepted tokens, one per line; mounted as a file."""
    key: str = "tokens"
    """Key in the Secret holding the tokens."""


class TLSSpec(_Model):
    """TLS on both endpoints (HTTP and gRPC), from a Secret of type kubernetes.io/tls (what a
    cert-manager Certificate writes). The Secret is mounted, never read by the operator; the
    pods pick up a renewed certificate without a restart."""

    secret_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    )
    """Secret of type kubernetes.io/tls in the InferenceService's namespace: keys tls.crt
    (certificate chain, PEM) and tls.key (private key); with clientAuth Require also ca.crt."""
    client_auth: ClientAuth = "None"
    """'None' (default): any client may connect over TLS. 'Require': mutual TLS, clients must
    present a certificate signed by the Secret's ca.crt (probes then only check the port)."""


class RuntimeSpec(_Model):
    """Overrides for the runtime container."""

    image: str | None = None
    """Runtime image to run instead of the operator's default (pin by digest)."""


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""A Kubernetes object name such as a PersistentVolumeClaim's (RFC 1123 subdomain)."""
QUANTITY = r"^[1-9][0-9]*(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
"""A whole number of bytes, optionally with a Kubernetes suffix (binary Ki..Ei, decimal k..E):
what both an emptyDir's ``sizeLimit`` and the runtime's ``cache_size_limit`` accept."""


class ModelCacheSpec(_Model):
    """The model cache by digest, mounted at /var/cache/modelfleet in every predictor pod: a
    version found there (same sha256) is not downloaded again."""

    enabled: bool = True
    """Mount the cache (default). false: no cache volume, every start downloads the model."""
    claim_name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN, max_length=253)
    """PersistentVolumeClaim to keep the cache on, in the InferenceService's namespace, mounted
    read-write: shared by every pod that mounts it (ReadWriteMany to share across nodes) and
    kept across pod restarts and rollouts. Default: an emptyDir per pod, which survives
    container restarts but not the pod. A claim that does not exist leaves the pods Pending
    (the scheduler's reason is shown in the PredictorReady condition)."""
    size_limit: str | None = Field(default=None, pattern=QUANTITY)
    """Most bytes the cache may hold (``10Gi``, ``500Mi``, plain bytes): the runtime evicts the
    least recently used versions no pod holds to stay under it, and the emptyDir gets it as
    its sizeLimit. Default: unbounded (the emptyDir's share of the node's disk)."""

    @model_validator(mode="after")
    def _off_means_nothing_else(self) -> ModelCacheSpec:
        """``enabled: false`` beside a claim or a size contradicts itself: refuse, never guess."""
        if not self.enabled and (self.claim_name or self.size_limit):
            raise ValueError("enabled is false but claimName or sizeLimit is set: drop one")
        return self


class ModelFleetSpec(_Model):
    """ModelFleet's own fields: everything KServe has no equivalent for."""

    version_policy: VersionPolicySpec = Field(default_factory=VersionPolicySpec)
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
    tls: TLSSpec | None = None
    """TLS on both endpoints; plain HTTP and h2c when absent."""
    oci_delivery: OciDelivery = "Auto"
    """How an oci:// model reaches the pods. 'Pull': the runtime pulls it from the registry
    (by digest, every blob checked; a moved tag is picked up while serving), with the
    credentials of the first of spec.predictor.imagePullSecrets (its .dockerconfigjson key,
    mounted read-only). 'ImageVolume': the kubelet pulls it once per node as an image volume
    (volumes[].image, beta and on by default since Kubernetes 1.35, GA in 1.36) mounted
    read-only at /mnt/models, with the pod's imagePullSecrets; nothing is downloaded by the
    runtime, and a tag is resolved when a pod starts (pin a digest). 'Auto' (default):
    ImageVolume when the API server is 1.35 or newer, else Pull. Other schemes always download;
    ImageVolume with a non-oci:// storageUri is an error."""
    model_cache: ModelCacheSpec = Field(default_factory=ModelCacheSpec)
    """The model cache by digest: an emptyDir per pod unless a claimName is given."""
    startup_timeout_seconds: int | None = Field(default=None, ge=10)
    """Seconds a pod may take from start to ready (download, verify, load, warm-up) before
    the kubelet restarts it; default the operator's ``startup_timeout_seconds``."""


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
    image_pull_secrets: list[SecretRef] = Field(default_factory=list)
    """Pod imagePullSecrets (KServe's PodSpec field): Secrets of type
    kubernetes.io/dockerconfigjson for the runtime image and an oci:// model; with
    spec.modelfleet.ociDelivery Pull the first one is also mounted for the runtime."""
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
    def storage_uris(self) -> dict[str, str]:
        """Every storageUri by its field: the stable model's, and the canary's if it has one."""
        uris = {"spec.predictor.model.storageUri": self.model.storage_uri}
        canary = self.modelfleet.canary
        if canary is not None and canary.storage_uri is not None:
            uris["spec.modelfleet.canary.storageUri"] = canary.storage_uri
        return uris

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
