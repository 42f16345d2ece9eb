"""One model file over HTTPS: ``https://host/path/model.onnx`` (a presigned URL works too).

Plain ``http://`` reaches only loopback addresses (``uri.check_scheme``): it is for tests and
for sidecars on the pod's own loopback. The query string, which in a presigned URL is the
credential, is sent but never written to a message or a log.
"""

from __future__ import annotations

import re
from pathlib import Path

import urllib3

from ..config import Settings
from . import httpclient
from .base import InvalidUriError, ObjectInfo, ProgressFn, StorageError
from .uri import ParsedUri

_TOTAL = re.compile(r"bytes \d+-\d+/(\d+)")


class HttpsStore:
    """A URL naming one object; its only key is the URL's last path segment."""

    def __init__(self, parsed: ParsedUri, settings: Settings) -> None:
        self._parsed = parsed
        self._name = parsed.path.rsplit("/", 1)[-1]
        self._pool = httpclient.new_pool(settings.download_concurrency)
        self.location = parsed.redacted
        self.hosts: tuple[str, ...] = (parsed.netloc,)
        self.ranged = False  # learnt from the server's answer in ``stat``

    @property
    def key(self) -> str:
        """The one key this store holds."""
        return self._name

    def _url(self, key: str) -> str:
        if key != self._name:
            raise StorageError(f"{self.location}: an https URI names one file", reason="InvalidUri")
        query = f"?{self._parsed.query}" if self._parsed.query else ""
        return f"{self._parsed.scheme}://{self._parsed.netloc}{self._parsed.path}{query}"

    def list(self, prefix: str) -> list[ObjectInfo]:
        """The one file, when its name starts with ``prefix``."""
        return [self.stat(self._name)] if self._name.startswith(prefix) else []

    def stat(self, key: str) -> ObjectInfo:
        """A GET of the first byte: presigned URLs are signed for GET, not HEAD. A 206
        answer gives the size and shows that ranges work; a 200 gives Content-Length."""
        response = httpclient.open_get(
            self._pool, self._url(key), self.location, {"Range": "bytes=0-0"}
        )
        try:
            size = _size(response)
        finally:
            # A 200 to a range request carries the whole object: drop the connection
            # rather than read it.
            if response.status == 206:
                response.release_conn()
            else:
                response.close()
        if size is None:
            raise StorageError(f"{self.location}: the server gives no size", reason="HttpError")
        self.ranged = response.status == 206
        etag = response.headers.get("ETag") or response.headers.get("Last-Modified") or ""
        return ObjectInfo(key, size, etag.strip('"'))

    def download(
        self, key: str, dest: Path, *, offset: int, length: int | None, progress: ProgressFn
    ) -> None:
        """GET the file, or one byte range of it, into ``dest`` at ``offset``."""
        headers = httpclient.range_header(offset, length)
        response = httpclient.open_get(self._pool, self._url(key), self.location, headers)
        httpclient.stream_to_file(
            response, dest, self.location, offset=offset, length=length, progress=progress
        )


def _size(response: urllib3.BaseHTTPResponse) -> int | None:
    if response.status == 206:
        match = _TOTAL.fullmatch(response.headers.get("Content-Range", ""))
        return int(match.group(1)) if match else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def open_store(parsed: ParsedUri, settings: Settings) -> tuple[HttpsStore, str | None]:
    """The store for one file URL."""
    store = HttpsStore(parsed, settings)
    if not store.key:
        raise InvalidUriError(f"{parsed.redacted}: an https URI must name a file")
    return store, store.key
