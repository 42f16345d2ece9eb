"""Google Cloud Storage over its JSON API: ``gs://bucket/prefix``.

Public objects (KServe's own samples live in public buckets) are read anonymously. With
``gcs_credentials_file`` set (a service-account key; ``GOOGLE_APPLICATION_CREDENTIALS``),
requests carry an OAuth token from google-auth, refreshed as it expires. Tokens never appear
in a message or a log. ``gcs_endpoint_url`` points at an emulator in tests.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

import urllib3

from ..config import Settings
from . import httpclient
from .base import AccessDeniedError, ObjectInfo, ProgressFn, StorageError, UnavailableError
from .uri import ParsedUri, netloc_of, split_single

READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
WRITE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"  # models push only


class _Token:
    """Bearer tokens from a credentials file, refreshed under a lock (threads share it)."""

    def __init__(self, path: Path, pool: urllib3.PoolManager, scope: str) -> None:
        import google.auth.exceptions
        import google.auth.transport.urllib3
        from google.oauth2 import service_account

        # Only service-account keys: a generic loader would also accept external-account
        # configurations that make google-auth call arbitrary URLs.
        try:
            info = json.loads(path.read_text())
            load = service_account.Credentials.from_service_account_info
            self._creds = load(info, scopes=[scope])  # type: ignore[no-untyped-call]
        except (OSError, ValueError, KeyError, google.auth.exceptions.GoogleAuthError) as exc:
            raise AccessDeniedError(
                f"GCS credentials file {path} is not a usable service-account key "
                f"({type(exc).__name__}); check credentials"
            ) from None
        self._request = google.auth.transport.urllib3.Request(pool)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self.token_host = netloc_of(str(info.get("token_uri", "")))

    def header(self, where: str) -> dict[str, str]:
        import google.auth.exceptions

        with self._lock:
            if not self._creds.valid:
                try:
                    self._creds.refresh(self._request)
                except google.auth.exceptions.TransportError:
                    raise UnavailableError(f"{where}: token endpoint unreachable") from None
                except google.auth.exceptions.RefreshError:
                    raise AccessDeniedError(
                        f"{where}: the GCS token request was refused; check credentials"
                    ) from None
            return {"Authorization": f"Bearer {self._creds.token}"}


class GcsStore:
    """Objects under ``gs://bucket/root``; keys relative to ``root``."""

    ranged = True

    def __init__(
        self, bucket: str, root: str, settings: Settings, *, scope: str = READ_SCOPE
    ) -> None:
        self._bucket = bucket
        self._root = root.strip("/")
        self._api = settings.gcs_endpoint_url.rstrip("/") + "/storage/v1"
        self._upload_api = settings.gcs_endpoint_url.rstrip("/") + "/upload/storage/v1"
        self._pool = httpclient.new_pool(settings.download_concurrency)
        self.location = f"gs://{bucket}/{self._root}".rstrip("/")
        self._token = (
            _Token(settings.gcs_credentials_file, self._pool, scope)
            if settings.gcs_credentials_file
            else None
        )
        hosts = [netloc_of(settings.gcs_endpoint_url)]
        if self._token is not None and self._token.token_host:
            hosts.append(self._token.token_host)
        self.hosts = tuple(hosts)

    def _name(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def _headers(self, where: str) -> dict[str, str]:
        return self._token.header(where) if self._token is not None else {}

    def _get_json(self, url: str, where: str) -> dict[str, Any]:
        response = httpclient.open_get(self._pool, url, where, self._headers(where))
        try:
            data: dict[str, Any] = json.loads(response.read())
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            raise UnavailableError(f"{where}: bad answer ({type(exc).__name__})") from None
        finally:
            response.release_conn()
        return data

    def _object_url(self, name: str) -> str:
        return f"{self._api}/b/{quote(self._bucket, safe='')}/o/{quote(name, safe='')}"

    def list(self, prefix: str) -> list[ObjectInfo]:
        """objects.list under ``root/prefix``, all pages."""
        full_prefix = f"{self._root}/{prefix}" if self._root else prefix
        skip = len(self._root) + 1 if self._root else 0
        where = f"gs://{self._bucket}/{full_prefix}"
        found: list[ObjectInfo] = []
        query = {"prefix": full_prefix, "fields": "items(name,size,etag,generation),nextPageToken"}
        while True:
            url = f"{self._api}/b/{quote(self._bucket, safe='')}/o?{urlencode(query)}"
            page = self._get_json(url, where)
            found += [_info(item, item["name"][skip:]) for item in page.get("items") or []]
            if not page.get("nextPageToken"):
                return found
            query["pageToken"] = page["nextPageToken"]

    def stat(self, key: str) -> ObjectInfo:
        """objects.get (metadata)."""
        where = f"gs://{self._bucket}/{self._name(key)}"
        return _info(self._get_json(self._object_url(self._name(key)), where), key)

    def download(
        self, key: str, dest: Path, *, offset: int, length: int | None, progress: ProgressFn
    ) -> None:
        """objects.get with ``alt=media`` and a Range header for a part."""
        where = f"gs://{self._bucket}/{self._name(key)}"
        headers = self._headers(where) | httpclient.range_header(offset, length)
        url = self._object_url(self._name(key)) + "?alt=media"
        response = httpclient.open_get(self._pool, url, where, headers)
        httpclient.stream_to_file(
            response, dest, where, offset=offset, length=length, progress=progress
        )

    def _insert(self, key: str, body: bytes | BinaryIO, size: int, **query: str) -> None:
        """objects.insert, a simple media upload (one request, as ``gcloud storage cp``
        sends objects up to a few GB)."""
        where = f"gs://{self._bucket}/{self._name(key)}"
        params = urlencode({"uploadType": "media", "name": self._name(key), **query})
        url = f"{self._upload_api}/b/{quote(self._bucket, safe='')}/o?{params}"
        headers = self._headers(where) | {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        }
        response = httpclient.open_request(self._pool, "POST", url, where, headers, body)
        response.drain_conn()
        response.release_conn()

    def upload(self, key: str, source: Path) -> None:
        with source.open("rb") as body:
            self._insert(key, body, source.stat().st_size)

    def create(self, key: str, data: bytes) -> bool:
        """objects.insert with ``ifGenerationMatch=0``: 412 when the object exists."""
        try:
            self._insert(key, data, len(data), ifGenerationMatch="0")
        except StorageError as exc:
            if exc.reason == httpclient.PRECONDITION_FAILED:
                return False
            raise
        return True


def _info(item: dict[str, Any], key: str) -> ObjectInfo:
    etag = str(item.get("etag") or item.get("generation") or "")
    return ObjectInfo(key, int(item.get("size", 0)), etag)


def open_store(parsed: ParsedUri, settings: Settings) -> tuple[GcsStore, str | None]:
    """The store for ``gs://bucket/prefix``; a prefix ending in ``.onnx`` names one file."""
    root, key = split_single(parsed.path)
    return GcsStore(parsed.host, root, settings), key


def open_writable(parsed: ParsedUri, settings: Settings) -> GcsStore:
    """The store of ``gs://bucket/prefix`` with the read-write scope, for ``models push``."""
    return GcsStore(parsed.host, parsed.path, settings, scope=WRITE_SCOPE)
