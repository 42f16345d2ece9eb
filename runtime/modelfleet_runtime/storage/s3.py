"""S3 and S3-compatible stores (MinIO, SeaweedFS, Ceph) through botocore: ``s3://bucket/prefix``.

The client is botocore's own: boto3 is botocore plus resources and s3transfer, and importing it
would cost a server's start about 50 ms more; ``modelfleet models push`` imports boto3's
managed upload when it uploads. Endpoint, region, CA bundle and addressing style come from the
settings, else from botocore's standard resolution (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``AWS_CA_BUNDLE``, credentials from ``AWS_*``, config files or the pod's role). botocore's own
retries are off: ``retry.py`` owns retrying, under one deadline. Errors are rebuilt from the
error code alone: botocore's message text (request ids, canonical requests, URLs) never reaches
a log or a status.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import SSLError as BotoSSLError

from ..config import Settings
from .base import (
    AccessDeniedError,
    NotFoundError,
    ObjectInfo,
    ProgressFn,
    StorageError,
    UnavailableError,
)
from .uri import ParsedUri, netloc_of, split_single

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CHUNK = 1024 * 1024
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AccountProblem",
    "403",
    "401",
}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
}


def make_client(settings: Settings) -> S3Client:
    """A client for the configured endpoint. Building it makes no network call."""
    config = Config(
        s3={"addressing_style": settings.s3_addressing_style},
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=settings.download_concurrency + 2,
    )
    verify: str | None = str(settings.s3_ca_bundle) if settings.s3_ca_bundle else None
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        verify=verify,
        config=config,
    )
    return cast("S3Client", client)  # botocore builds the class from S3's service model


class S3Store:
    """Objects under ``s3://bucket/root``; keys relative to ``root``."""

    ranged = True

    def __init__(self, bucket: str, root: str, client: S3Client) -> None:
        self._bucket = bucket
        self._root = root.strip("/")
        self._client = client
        self.location = f"s3://{bucket}/{self._root}".rstrip("/")
        self.hosts: tuple[str, ...] = (netloc_of(client.meta.endpoint_url),)

    def _key(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def _where(self, key: str) -> str:
        """``key``'s URI, for error messages."""
        return f"s3://{self._bucket}/{self._key(key)}"

    def list(self, prefix: str) -> list[ObjectInfo]:
        """ListObjectsV2 under ``root/prefix``, all pages."""
        full_prefix = f"{self._root}/{prefix}" if self._root else prefix
        skip = len(self._root) + 1 if self._root else 0
        found = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=full_prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    found.append(
                        ObjectInfo(obj["Key"][skip:], obj["Size"], obj.get("ETag", "").strip('"'))
                    )
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, f"s3://{self._bucket}/{full_prefix}") from None
        return found

    def stat(self, key: str) -> ObjectInfo:
        """HeadObject."""
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, self._where(key)) from None
        return ObjectInfo(key, head["ContentLength"], head.get("ETag", "").strip('"'))

    def download(
        self, key: str, dest: Path, *, offset: int, length: int | None, progress: ProgressFn
    ) -> None:
        """GetObject, with a Range header for a part; streamed to ``dest`` at ``offset``."""
        where = self._where(key)
        extra: dict[str, Any] = {}
        if length is not None:
            extra["Range"] = f"bytes={offset}-{offset + length - 1}"
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self._key(key), **extra)
            body = response["Body"]
            mode = "r+b" if length is not None else "wb"
            with dest.open(mode) as out:
                out.seek(offset)
                for chunk in body.iter_chunks(_CHUNK):
                    out.write(chunk)
                    progress(len(chunk))
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, where) from None

    def upload(self, key: str, source: Path) -> None:
        """boto3's managed upload: multipart for large files, parts in parallel."""
        from boto3.exceptions import S3UploadFailedError  # push only: a server never uploads
        from boto3.s3.transfer import S3Transfer

        where = self._where(key)
        try:
            with S3Transfer(self._client) as transfer:
                transfer.upload_file(str(source), self._bucket, self._key(key))
        except S3UploadFailedError as exc:  # boto3 wraps the ClientError, text and all
            cause = exc.__context__
            if isinstance(cause, ClientError | BotoCoreError):
                raise map_error(cause, where) from None
            raise StorageError(f"{where}: upload failed", reason="UploadFailed") from None
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, where) from None

    def create(self, key: str, data: bytes) -> bool:
        """PutObject with ``If-None-Match: *`` (S3 conditional writes; MinIO and SeaweedFS
        honour it too): 412 means another writer was first."""
        try:
            self._client.put_object(
                Bucket=self._bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise map_error(exc, self._where(key)) from None
        except BotoCoreError as exc:
            raise map_error(exc, self._where(key)) from None
        return True


def map_error(exc: ClientError | BotoCoreError, where: str) -> StorageError:
    """A StorageError naming ``where`` and the S3 error code, and nothing of botocore's text."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDeniedError(f"{where}: no S3 credentials found; check credentials")
    if isinstance(exc, BotoSSLError):
        # Not retried: a certificate that does not verify is a setting to fix, not an outage.
        what = (
            "certificate verify failed" if "verify failed" in str(exc) else "TLS handshake failed"
        )
        return StorageError(
            f"{where}: {what} for the S3 endpoint; if it uses a private CA, set s3_ca_bundle "
            "(--s3-ca-bundle, MODELFLEET_S3_CA_BUNDLE) to that CA's PEM file",
            reason="TLSError",
        )
    if isinstance(exc, BotoCoreError):
        # Connection refused or reset, timeouts, a body cut short: the network's fault.
        return UnavailableError(f"{where}: S3 endpoint unreachable ({type(exc).__name__})")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in _NOT_FOUND:
        return NotFoundError(f"{where}: not found ({code})")
    if code in _DENIED or status in (401, 403):
        return AccessDeniedError(f"{where}: access denied ({code}); check credentials")
    if code in _TRANSIENT or status >= 500 or status == 429:
        return UnavailableError(f"{where}: S3 unavailable ({code}, HTTP {status})")
    return StorageError(f"{where}: S3 error {code} (HTTP {status})", reason=_reason(code))


def _reason(code: str) -> str:
    word = "".join(ch for ch in code if ch.isalnum())
    return word[:40] or "StorageError"


def open_store(parsed: ParsedUri, settings: Settings) -> tuple[S3Store, str | None]:
    """The store for ``s3://bucket/prefix``; a prefix ending in ``.onnx`` names one file."""
    root, key = split_single(parsed.path)
    return S3Store(parsed.host, root, make_client(settings)), key


def open_writable(parsed: ParsedUri, settings: Settings) -> S3Store:
    """The store of ``s3://bucket/prefix``, for ``modelfleet models push``."""
    return open_store(parsed, settings)[0]
