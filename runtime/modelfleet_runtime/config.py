"""The runtime's settings: one pydantic-settings model, read from the command line and the
environment (prefix ``MODELFLEET_``).

``modelfleet serve`` builds it in ``cli.main()``; the operator imports it to render the exact
environment a pod gets, so a laptop and a cluster run the same code path. Nothing here reads
the environment at import time.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelfleet_runtime import schemes
from modelfleet_runtime.quantities import byte_count

ENV_PREFIX = "MODELFLEET_"

VersionPolicy = Literal["latest", "all", "specific"]
LogFormat = Literal["auto", "json", "text"]
GraphOptimization = Literal["disable", "basic", "extended", "all"]


def bundled_example_uri() -> str:
    """The path of the iris classifier that ships inside the package."""
    return str(resources.files("modelfleet_runtime") / "examples" / "iris.onnx")


class Settings(BaseSettings):
    """Everything ``modelfleet serve`` can be told. Each field is also ``MODELFLEET_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        use_attribute_docstrings=True,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # --- What to serve ---------------------------------------------------------------------
    model_uri: str = Field(default_factory=bundled_example_uri)
    """Where the model lives: s3://bucket/prefix, gs://bucket/prefix, https://host/model.onnx,
    oci://registry/repo[:tag|@sha256:digest] (a model image, served as version 1),
    file:///path or a plain path. One .onnx file, one archive (.tar.gz, .tgz, .tar, .zip;
    unpacked as version 1) or a repository folder of numbered version folders (1/model.onnx,
    2/model.onnx). Default: the bundled iris example."""

    name: str | None = None
    """Model name in URLs (/v2/models/NAME). Default: 'iris' for the bundled example, else the
    last segment of the URI without its .onnx suffix."""

    version_policy: VersionPolicy = "latest"
    """Which versions to load: 'latest' (the newest --num-versions), 'all', or 'specific'
    (exactly --versions)."""

    num_versions: int = Field(default=1, ge=1)
    """How many of the newest versions the 'latest' policy keeps loaded."""

    versions: list[int] = Field(default_factory=list)
    """The version numbers the 'specific' policy loads, e.g. '[1,3]'."""

    sha256: dict[int, str] = Field(default_factory=dict)
    """Expected sha256 digest of model.onnx per version (for an archive: of the model.onnx it
    unpacks to), e.g. '{"1": "ab12..."}'. A mismatch is a load failure; versions not listed
    are not checked."""

    poll_interval: float = Field(default=30.0, ge=0)
    """Seconds between checks of storage for new versions (0 turns polling off). Only the
    'latest' and 'all' policies can pick up new versions."""

    model_dir: Path = Field(default=Path("/tmp/modelfleet/models"))
    """Local folder the versions are downloaded into (an emptyDir in a pod)."""

    # --- Model cache -----------------------------------------------------------------------
    cache_dir: Path | None = None
    """A model cache by digest, shareable by several servers and pods (a PVC or an emptyDir):
    each version is kept under its content digest, so a second or restarted server downloads
    nothing, servers starting together download a version once, and every cached file is checked
    against its recorded sha256 before it is served. Unset: no cache (each server downloads into
    model_dir)."""

    cache_size_limit: int | None = Field(default=None, ge=0)
    """Bound of the cache's size in bytes ('10Gi', '500Mi' or plain bytes): the least recently
    used versions that no live server holds are evicted to stay under it (versions in use are
    never evicted, so the cache can exceed it while they serve). Unset: no bound."""

    cache_verify: Literal["changed", "always"] = "changed"
    """When a server taking a version from the cache hashes its files again: 'changed' (a file
    whose inode, size, mtime or ctime differ from when it was last hashed; any write through
    the file system changes the ctime) or 'always' (every file on every start, which also
    catches corruption below the file system, at 1-2 s per GB of model more per start)."""

    optimized_model_cache: bool = True
    """With cache_dir: save ONNX Runtime's optimized graph beside a cached version and load it
    on the next start (a warm start, without graph optimisation) when the ONNX Runtime version,
    graph optimisation level, execution providers and CPU are the same."""

    # --- Storage -------------------------------------------------------------------------
    s3_endpoint_url: str | None = None
    """S3 endpoint for S3-compatible stores (MinIO, SeaweedFS, Ceph). Default: boto3's own
    ($AWS_ENDPOINT_URL, else AWS). Credentials come from the standard AWS_* variables or the
    pod's role, never from these settings."""

    s3_region: str | None = None
    """S3 region. Default: boto3's own resolution ($AWS_REGION, config files)."""

    s3_ca_bundle: Path | None = None
    """CA bundle for the S3 endpoint's TLS certificate. Default: $AWS_CA_BUNDLE or the system's."""

    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    """S3 bucket addressing; S3-compatible servers usually want 'path'."""

    gcs_endpoint_url: str = "https://storage.googleapis.com"
    """Google Cloud Storage endpoint (an emulator's address in tests)."""

    gcs_credentials_file: Path | None = None
    """Service-account key file for private gs:// buckets (default: the file named by
    $GOOGLE_APPLICATION_CREDENTIALS, if set). Without one, objects are read anonymously
    (public buckets, like KServe's samples)."""

    allowed_schemes: list[str] = Field(default_factory=schemes.default_allowed_schemes)
    """URI schemes the server may fetch from; anything else is refused before any connection.
    Default: s3, gs, https, oci, file (http, to loopback only, must be named)."""

    allowed_hosts: list[str] = Field(default_factory=list)
    """If set, the only hosts (S3/GCS endpoints, https hosts, registries and the token realms
    and blob-download hosts they send the server to) the server may contact."""

    registry_config: Path | None = None
    """Docker config file with credentials for oci:// registries ({"auths": {"host:port":
    {"auth": base64 of user:password}}}, as `docker login` writes it and an image pull Secret
    holds it); re-read when a registry asks for credentials. Default:
    $DOCKER_CONFIG/config.json, else ~/.docker/config.json when it exists, else anonymous."""

    registry_ca_file: Path | None = None
    """CA bundle (PEM) for oci:// registries' TLS certificates. Default: the system's CAs."""

    download_concurrency: int = Field(default=8, ge=1, le=64)
    """Parallel byte-range requests per large object."""

    download_part_size: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024)
    """Bytes per range request; objects larger than this download in parallel parts."""

    retry_initial_backoff: float = Field(default=0.5, gt=0)
    """Seconds before the first retry of a failed storage call; doubles with jitter."""

    retry_max_backoff: float = Field(default=30.0, gt=0)
    """Upper bound in seconds of one wait between storage retries."""

    retry_deadline: float = Field(default=300.0, gt=0)
    """Seconds after which a failing storage call gives up and the model is reported
    not ready with the reason (the poll loop tries again later)."""

    # --- Serving -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Address to listen on (the operator sets 0.0.0.0 in pods)."""

    port: int = Field(default=8080, ge=0, le=65535)
    """HTTP port."""

    grpc_port: int | None = Field(default=8081, ge=0, le=65535)
    """gRPC port of the Open Inference Protocol (same host; 0: any free port; null: off)."""

    grpc_transport: Literal["grpc", "h2"] = "grpc"
    """What serves the gRPC port: grpcio's server, or (h2, opt-in) uvicorn's own HTTP/2, about
    2x the calls per CPU second (pip install 'modelfleet[h2]')."""

    max_body_size: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest request body in bytes (as Triton); larger ones get 413."""

    max_concurrency: int = Field(default=256, ge=1)
    """Requests in flight beyond which the server answers 503 at once instead of queueing."""

    header_read_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send a request's headers, from the connection's opening (its
    first request) or the request's first byte (later ones); then 408 and the connection
    closed. Also gRPC's HTTP/2 handshake timeout (with TLS, --tls-handshake-timeout bounds
    the TLS handshake first, on both ports). Keep-alive idle time between requests is not
    counted (uvicorn closes idle connections after 5 s)."""

    body_read_timeout: float = Field(default=30.0, gt=0)
    """Seconds a request body may go without a byte arriving before the connection is closed
    (408 if no answer has started); also the grace before --body-min-rate applies."""

    body_min_rate: int = Field(default=64 * 1024, ge=0)
    """Bytes per second a body must average once --body-read-timeout has passed: the time
    allowed grows by one second per this many bytes received (0: no rate, only the silence
    limit). The default lets a 64 MiB body take 17 minutes (a 512 kbit/s link) and any body
    30 s, but cuts a trickle."""

    max_connections: int = Field(default=2048, ge=1)
    """Open connections on each port beyond which a new one gets 503 ``{"error": "too many
    open connections"}`` and is closed (gRPC: closed at once). Room for pooled keep-alive
    clients (8x --max-concurrency) at about 7 KiB of the process's memory each
    (bench/slow_clients.py) plus the kernel's socket buffers; the soft descriptor limit is
    raised to fit both ports where the hard limit allows."""

    grace_period: float = Field(default=25.0, ge=0)
    """Seconds that in-flight requests get to finish after SIGTERM (below Kubernetes' 30 s)."""

    log_level: str = "INFO"
    """Python log level name."""

    log_format: LogFormat = "auto"
    """'json' (one JSON object per line), 'text' (human-readable lines), or 'auto': text
    when stderr is a terminal, else JSON (pods, pipes, files; the operator and the image set
    'json' explicitly)."""

    # --- ONNX Runtime ------------------------------------------------------------------------
    intra_op_threads: int = Field(default=0, ge=0)
    """Threads ONNX Runtime uses inside one operator (0: ONNX Runtime's own choice, one per
    core). Set it to the pod's CPU limit."""

    inter_op_threads: int = Field(default=0, ge=0)
    """Threads across independent operators (0: ONNX Runtime's choice)."""

    graph_optimization: GraphOptimization = "all"
    """ONNX Runtime graph optimisation level."""

    prepack_weights: bool = True
    """ONNX Runtime pre-packs constant weights (Gemm, MatMul) when it creates a session: faster
    inference at batch sizes above one, at the cost of most of a large model's session time
    and a packed copy of those weights in anonymous memory (a 1 GB MLP with external data:
    1.0-1.6 s and 1 GiB; bench/session_prepack.py). false: that session and its first run take
    about 0.1 s, and the weights stay memory-mapped file pages (as resident once read, but the
    kernel can drop and share them); batch-1 inference runs about as fast, larger batches
    slower (2.3x at batch 8 there)."""

    execution_providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    """ONNX Runtime execution providers, in order of preference (e.g. CUDAExecutionProvider)."""

    inference_threads: int = Field(default=4, ge=1)
    """Worker threads running inference (ONNX Runtime releases the GIL in run)."""

    inline_run_max_us: int = Field(default=200, ge=0)
    """Models whose warm-up run takes at most this many microseconds run on the event loop
    instead of a worker thread, whose hand-off costs more than such a run (0: always use
    worker threads)."""

    # --- Dynamic batching -------------------------------------------------------------------
    max_batch_size: int = Field(default=0, ge=0)
    """Largest batch the dynamic batcher forms along the first dimension (0: no batching)."""

    max_queue_delay_us: int = Field(default=500, ge=0)
    """Microseconds a request may wait for others to fill a batch; none once its queue holds
    every request the server holds (no body arriving, no other version's request)."""

    preferred_batch_sizes: list[int] = Field(default_factory=list)
    """Batch sizes the batcher sends at once when reached, without waiting out the delay."""

    max_queue_size: int = Field(default=1024, ge=1)
    """Requests waiting in the batch queue beyond which new ones get 503."""

    # --- Authentication ---------------------------------------------------------------------
    auth_tokens_file: Path | None = None
    """File of accepted bearer tokens, one per line (a mounted Secret); re-read when it
    changes, so tokens rotate without a restart. Unset: no authentication."""

    auth_token: SecretStr | None = None
    """One accepted bearer token given directly (prefer --auth-tokens-file)."""

    # --- TLS ---------------------------------------------------------------------------------
    tls_cert_file: Path | None = None
    """PEM certificate chain (server certificate first) served on both ports; with
    --tls-key-file, HTTP and gRPC speak TLS only. Re-read when it changes (a mounted Secret
    rotated in place): new connections get the new certificate, open ones keep theirs."""

    tls_key_file: Path | None = None
    """PEM private key of --tls-cert-file (unencrypted, as cert-manager writes it)."""

    tls_client_ca_file: Path | None = None
    """PEM bundle of the CAs that sign client certificates: when set, every connection to
    either port must present a certificate signed by one of them (mutual TLS), health
    checks included. Re-read when it changes."""

    tls_handshake_timeout: float = Field(default=10.0, gt=0)
    """Seconds a new connection to a TLS port has to finish its handshake before it is
    closed, so that idle or stalled connections cannot hold the server."""

    # --- Tracing ----------------------------------------------------------------------------
    tracing: bool = False
    """Export OpenTelemetry spans over OTLP: fetch and load of each model version, and infer
    for each request (a child of the caller's W3C traceparent). Configured by OpenTelemetry's
    standard variables: OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4317),
    OTEL_SERVICE_NAME (default modelfleet), OTEL_TRACES_SAMPLER, OTEL_TRACES_EXPORTER...
    Needs the otel extra (in the runtime image). Off: no OpenTelemetry code runs; a request's
    traceparent still puts its trace id in the request's log lines."""

    @field_validator("sha256")
    @classmethod
    def _check_digests(cls, value: dict[int, str]) -> dict[int, str]:
        for version, digest in value.items():
            hexdigest = digest.removeprefix("sha256:").lower()
            if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
                raise ValueError(f"version {version}: sha256 must be 64 hex digits")
            value[version] = hexdigest
        return value

    @field_validator("cache_size_limit", mode="before")
    @classmethod
    def _parse_size(cls, value: object) -> int | None:
        return None if value is None or value == "" else byte_count(value)

    @model_validator(mode="after")
    def _check_policy(self) -> Settings:
        if self.version_policy == "specific" and not self.versions:
            raise ValueError("version_policy 'specific' needs at least one entry in versions")
        if any(v < 1 for v in self.versions):
            raise ValueError("version numbers start at 1")
        return self

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self

    @property
    def tls(self) -> bool:
        """Whether both ports speak TLS."""
        return self.tls_cert_file is not None

    @property
    def model_name(self) -> str:
        """The name the model is served under."""
        return self.name or schemes.model_name(self.model_uri)
