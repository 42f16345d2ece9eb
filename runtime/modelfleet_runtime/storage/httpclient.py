"""Plain HTTP GETs for the https and gs stores, over urllib3 (already a boto3 dependency).

Redirects are never followed: a redirect could point past the host allow-list (SSRF).
urllib3's own retries are off, as ``retry.py`` owns retrying. Errors carry the caller's
``where`` (a URL without its query) and never urllib3's text, which repeats the full URL,
presigned signature included.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import urllib3

from .base import (
    AccessDeniedError,
    NotFoundError,
    ProgressFn,
    StorageError,
    UnavailableError,
)

_CHUNK = 1024 * 1024
TIMEOUT = urllib3.Timeout(connect=5.0, read=60.0)
PRECONDITION_FAILED = "PreconditionFailed"
"""The reason of a 412: a conditional write found the object already there."""


class _RedactQuery(logging.Filter):
    """urllib3 logs each request's path with its query at DEBUG; in a presigned URL the
    query is the credential. This filter cuts queries out of those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.split("?", 1)[0] + "?<redacted>" if isinstance(a, str) and "?" in a else a
                for a in record.args
            )
        return True


_REDACT = _RedactQuery()


def new_pool(concurrency: int) -> urllib3.PoolManager:
    """A connection pool sized for ``concurrency`` parallel range requests."""
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    if _REDACT not in urllib3_log.filters:
        urllib3_log.addFilter(_REDACT)
    return urllib3.PoolManager(maxsize=concurrency + 2, timeout=TIMEOUT, retries=False)


def open_get(
    pool: urllib3.PoolManager, url: str, where: str, headers: Mapping[str, str]
) -> urllib3.BaseHTTPResponse:
    """Start a GET; the body is left unread. Non-2xx statuses become StorageErrors."""
    return open_request(pool, "GET", url, where, headers)


def open_request(
    pool: urllib3.PoolManager,
    method: str,
    url: str,
    where: str,
    headers: Mapping[str, str],
    body: bytes | BinaryIO | None = None,
) -> urllib3.BaseHTTPResponse:
    """Send one request; the answer's body is left unread. Non-2xx statuses become
    StorageErrors."""
    try:
        response = pool.request(
            method, url, body=body, headers=dict(headers), preload_content=False, redirect=False
        )
    except urllib3.exceptions.HTTPError as exc:
        raise UnavailableError(f"{where}: cannot connect ({type(exc).__name__})") from None
    if response.status >= 300:
        response.drain_conn()
        response.release_conn()
        raise status_error(response.status, where)
    return response


def status_error(status: int, where: str) -> StorageError:
    """The StorageError for an HTTP error status."""
    if status == 404:
        return NotFoundError(f"{where}: not found (HTTP 404)")
    if status in (401, 403):
        return AccessDeniedError(f"{where}: access denied (HTTP {status}); check credentials")
    if status in (408, 429) or status >= 500:
        return UnavailableError(f"{where}: server unavailable (HTTP {status})")
    if status == 412:
        return StorageError(f"{where}: precondition failed (HTTP 412)", reason=PRECONDITION_FAILED)
    if 300 <= status < 400:
        return StorageError(
            f"{where}: the server redirects (HTTP {status}); redirects are not followed, "
            "give the final URL",
            reason="Redirect",
        )
    return StorageError(f"{where}: HTTP {status}", reason="HttpError")


def stream_to_file(
    response: urllib3.BaseHTTPResponse,
    dest: Path,
    where: str,
    *,
    offset: int,
    length: int | None,
    progress: ProgressFn,
) -> None:
    """Write the body to ``dest`` at ``offset``. A ranged request must get 206: a server that
    ignores Range would otherwise write the whole object into one part's slot."""
    try:
        if length is not None and response.status != 206:
            raise StorageError(
                f"{where}: asked for a byte range, got HTTP {response.status}",
                reason="RangeNotSupported",
            )
        mode = "r+b" if length is not None else "wb"
        with dest.open(mode) as out:
            out.seek(offset)
            for chunk in response.stream(_CHUNK):
                out.write(chunk)
                progress(len(chunk))
    except urllib3.exceptions.HTTPError as exc:
        raise UnavailableError(f"{where}: download cut short ({type(exc).__name__})") from None
    finally:
        response.release_conn()


def range_header(offset: int, length: int | None) -> dict[str, str]:
    """The Range header for a part, or none for a whole object."""
    if length is None:
        return {}
    return {"Range": f"bytes={offset}-{offset + length - 1}"}
