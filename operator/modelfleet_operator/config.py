"""The operator's settings: one pydantic-settings model, every field both a ``modelfleet
operator --flag`` and an environment variable ``MODELFLEET_OPERATOR_<NAME>`` (the chart sets
the variables; lists and maps are JSON there), as ``modelfleet serve`` does with the runtime's
``Settings``.

Built once at start-up, from the command line over the environment over the defaults
(``main.parse_settings``), or by ``modelfleet render`` from the environment; then passed to
``handlers.register`` (the live half's options), ``render()`` and ``build_status()``. Nothing
reads the environment at import time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, CliImplicitFlag, SettingsConfigDict

ENV_PREFIX = "MODELFLEET_OPERATOR_"
_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:[.+\-].*)?")
_HTTP_URL = re.compile(r"http://(\[[0-9a-fA-F:.]+\]|[^/:\[\]\s]+):\d{1,5}(/\S*)?")


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a Kubernetes version: ``v1.37.2``, ``1.35``, ``v1.34.1-eks-3``."""
    match = _VERSION.fullmatch(version.strip())
    if match is None:
        raise ValueError(f"{version!r} is not a Kubernetes version such as v1.37.2")
    return int(match[1]), int(match[2])


def version_from_info(info: Mapping[str, Any]) -> str:
    """The version in an API server's ``GET /version`` answer: ``gitVersion``, else built
    from ``major`` and ``minor`` (managed clusters write minors such as ``35+``)."""
    git = str(info.get("gitVersion") or "")
    if _VERSION.fullmatch(git):
        return git
    built = f"{info.get('major', '')}.{str(info.get('minor', '')).rstrip('+')}"
    version_tuple(built)  # raises ValueError when neither is a version
    return built


def _default_resources() -> dict[str, Any]:
    return {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }


class OperatorConfig(BaseSettings):
    """Everything the operator can be told. Each option is also MODELFLEET_OPERATOR_<NAME>."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, use_attribute_docstrings=True, extra="ignore", frozen=True
    )

    runtime_image: str = "ghcr.io/modelfleet/runtime:0.1.0"
    """Runtime image for predictor pods. Pin it by digest in production (repo@sha256:...);
    ``predictor.model.runtimeVersion`` replaces the tag, ``spec.modelfleet.runtime.image`` the
    whole reference."""

    image_pull_policy: str = "IfNotPresent"
    """imagePullPolicy of the runtime container."""

    default_resources: dict[str, Any] = Field(default_factory=_default_resources)
    """Container resources when the spec gives none; requests and limits both, as Pod
    Security and the HPA's utilisation maths need requests."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Level of the operator's logs (kopf's included); any case is accepted."""

    log_format: Literal["json", "text"] = "json"
    """``json``: one JSON object per line (python-json-logger); ``text``: plain lines."""

    cluster_domain: str = "cluster.local"
    """Cluster DNS domain used in status.url."""

    gateway_api: bool | None = None
    """Render a Gateway API HTTPRoute (exact canary weights) next to the Service. Unset: the
    operator asks the API server at start-up whether it serves HTTPRoutes
    (``gateway.networking.k8s.io/v1``); ``true``/``false`` decide without asking. The offline
    ``modelfleet render`` cannot ask: unset counts as ``false`` there."""

    server_version: str | None = None
    """The API server's Kubernetes version (e.g. ``v1.37.2``), which decides
    ``spec.modelfleet.ociDelivery: Auto`` (image volumes from 1.35, else the runtime pulls).
    Unset: the operator asks the API server at start-up (``GET /version``, allowed to every
    client); set: used without asking, e.g. ``1.34`` to keep runtime pulls while the nodes'
    kubelets are older than the API server. The offline ``modelfleet render`` cannot ask: unset
    counts as older than 1.35 there (``--server-version`` sets it)."""

    gateway_name: str = "modelfleet"
    """Gateway the HTTPRoutes attach to."""

    gateway_namespace: str | None = None
    """Namespace of that Gateway; default: the InferenceService's namespace."""

    default_scale_target: dict[str, int] = Field(
        default_factory=lambda: {"cpu": 80, "memory": 80, "concurrency": 8, "rps": 50}
    )
    """scaleTarget per scaleMetric when the spec gives none: % of requests for cpu/memory
    (KServe's 80), in-flight requests per pod, requests/s per pod."""

    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    """Prometheus that KEDA queries for concurrency/rps triggers."""

    concurrency_query: str = (
        "sum(modelfleet_requests_in_flight"
        '{{namespace="{namespace}",pod=~"{deployment}-[a-z0-9]+-[a-z0-9]+"}})'
    )
    """PromQL for 'concurrency': requests in flight over one Deployment's pods ({namespace},
    {name}, {deployment} filled in). KEDA divides it by scaleTarget to get replicas. Assumes
    Prometheus adds the usual namespace and pod labels when scraping by annotation."""

    rps_query: str = (
        "sum(rate(modelfleet_requests_total"
        '{{namespace="{namespace}",pod=~"{deployment}-[a-z0-9]+-[a-z0-9]+"}}[1m]))'
    )
    """PromQL for 'rps': requests per second over one Deployment's pods (as above)."""

    pre_stop_seconds: int = Field(default=5, ge=5)
    """preStop sleep so endpoints drop the pod before SIGTERM; at least 5 s."""

    termination_margin_seconds: int = Field(default=5, ge=1)
    """terminationGracePeriodSeconds = preStop + the runtime's grace_period + this margin."""

    startup_timeout_seconds: int = Field(default=1800, ge=10)
    """Seconds a predictor pod may take from container start to ready (download, verify,
    load and warm-up of its model) before the kubelet restarts it: the startup probe's
    budget, sized for multi-gigabyte downloads; liveness is not probed until it passes.
    ``spec.modelfleet.startupTimeoutSeconds`` overrides it per InferenceService."""

    progress_deadline_seconds: int = Field(default=600, ge=60)
    """Deployment progressDeadlineSeconds; past it the rollout is reported RolloutStalled."""

    runtime_defaults: dict[str, str] = Field(default_factory=dict)
    """Extra runtime settings for every pod, by runtime field name (e.g. {"log_level":
    "DEBUG"}); rendered as the runtime's MODELFLEET_* variables."""

    allowed_storage_hosts: list[str] = Field(default_factory=list)
    """If set, passed to the runtime's allowed_hosts: the only storage hosts pods may reach."""

    trusted_storage_hosts: list[str] = Field(default_factory=list)
    """Host names a storageUri or storage endpoint may name although the SSRF check refuses
    them (localhost, *.localhost, loopback, link-local and cloud metadata addresses), matched
    exactly, any case: e.g. ["localhost"] for a kind cluster's local registry at
    localhost:5001, which the nodes pull image volumes from. Default: none."""

    # --- The live operator (``modelfleet operator``); ``modelfleet render`` ignores these ----
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch (--namespace NS, -n NS, repeatable); none: every namespace, which
    needs cluster-wide RBAC (the chart's watch.clusterWide)."""

    all_namespaces: CliImplicitFlag[bool] = False
    """Watch every namespace: the default when no namespace is named, refused with one."""

    liveness: str | None = None
    """http://HOST:PORT/PATH: answer health checks at PATH and serve /metrics on the same
    port (the chart's probes and scrapes use it). Unset: no HTTP port."""

    peering: str | None = None
    """kopf peering name: run several replicas of which one is active (a KopfPeering per
    watched namespace, else a ClusterKopfPeering, must exist). Unset: standalone."""

    priority: int | None = None
    """Peering priority, unique per replica: equal priorities freeze every replica. Unset: one
    derived from the host (pod) name."""

    peering_lifetime: int = Field(default=60, ge=1)
    """Seconds a silent replica counts as alive, so a follower takes over about this long after
    the active replica dies (kopf's settings.peering.lifetime, its default)."""

    resync_seconds: float = Field(default=60.0, gt=0)
    """Backstop: every InferenceService is reconciled at least this often, events or not."""

    coalesce_seconds: float = Field(default=0.2, ge=0)
    """Child events of one InferenceService within this many seconds share one reconcile (its
    children arrive on separate watches: without it, the first event's reconcile finds the
    others not yet indexed and re-applies them, a wasted write each)."""

    retries: int = Field(default=5, ge=1)
    """Attempts of a child- or resync-triggered reconcile on temporary API errors (kopf
    retries its own handlers)."""

    handler_backoff: float = Field(default=2.0, gt=0)
    """Seconds before kopf retries a handler that failed with an unexpected error (kopf's
    default of 60 s misses the recovery targets)."""

    request_timeout: float = Field(default=10.0, gt=0)
    """Seconds without a byte from the API server before one of our requests counts as a
    temporary error."""

    @model_validator(mode="after")
    def _one_scope(self) -> OperatorConfig:
        """--namespace and --all-namespaces contradict each other: refuse, never guess."""
        if self.namespaces and self.all_namespaces:
            raise ValueError("name namespaces to watch or all_namespaces, not both")
        return self

    @field_validator("liveness")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        """The health endpoint is a plain HTTP URL with a port: say so at start-up."""
        if value is not None and _HTTP_URL.fullmatch(value) is None:
            raise ValueError(f"{value!r} is not http://HOST:PORT/PATH")
        return value

    @field_validator("server_version")
    @classmethod
    def _known_version(cls, value: str | None) -> str | None:
        """Refuse a version that cannot be compared, at start-up rather than per render."""
        if value is not None:
            version_tuple(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        """Accept any case: the chart passes the level upper-cased, users may not."""
        return value.upper() if isinstance(value, str) else value
