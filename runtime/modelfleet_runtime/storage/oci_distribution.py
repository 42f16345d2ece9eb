"""The OCI distribution protocol calls ``oci.py`` makes to one repository: resolve a tag,
fetch a manifest, HEAD/GET/upload blobs, PUT a manifest (over ``oci_http.RegistryHttp``).

Manifests are fetched with the OCI and Docker media types in ``Accept``; every byte fetched
(manifest, config, layer) is checked against its sha256 digest while it streams. Redirects are
followed only for blobs (registries hand out blob downloads from object storage or a CDN), only
to https, only to hosts ``allowed_hosts`` admits, and without the ``Authorization`` header; as
every blob is verified by digest, a redirect cannot swap its bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3

from ..config import Settings
from .base import IntegrityError, ProgressFn, StorageError, UnavailableError
from .oci_http import MAX_SMALL, RegistryHttp, discard, read_capped, registry_error
from .oci_image import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from .uri import check_hosts, netloc_of

ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
MAX_MANIFEST = 4 * 1024 * 1024
"""Largest manifest accepted (distribution's own limit for a PUT)."""
_CHUNK = 1024 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_HOPS = 3


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class OciRepository:
    """One repository of one registry: the protocol's calls. Thread-safe."""

    def __init__(self, netloc: str, name: str, settings: Settings, *, push: bool = False) -> None:
        self._http = RegistryHttp(netloc, name, settings, push=push)
        self.netloc = netloc
        self.where = self._http.where
        self._base = self._http.base

    # --- Manifests --------------------------------------------------------------------------

    def resolve(self, tag: str) -> str:
        """The digest ``tag`` points at now (a HEAD: registries do not count it as a pull)."""
        where = f"{self.where}:{tag}"
        url = f"{self._base}/manifests/{tag}"
        response = self._http.request("HEAD", url, where, {"Accept": ACCEPT})
        discard(response)
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        return sha256_digest(self.manifest(tag)[0])  # a registry that omits the header

    def manifest(self, reference: str) -> tuple[bytes, str]:
        """The manifest's bytes and media type, checked against the digest it is fetched by
        (or, by tag, against the digest the registry names)."""
        sep = "@" if reference.startswith("sha256:") else ":"
        where = f"{self.where}{sep}{reference}"
        response = self._http.request(
            "GET", f"{self._base}/manifests/{reference}", where, {"Accept": ACCEPT}
        )
        named = response.headers.get("Docker-Content-Digest")
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        data = read_capped(response, MAX_MANIFEST, where)
        expected = reference if sep == "@" else named
        if expected and sha256_digest(data) != expected:
            raise IntegrityError(
                f"{where}: the manifest's bytes have digest {sha256_digest(data)}, not {expected}"
            )
        return data, media_type

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        """Store a manifest under ``tag``; return its digest (checked against the bytes)."""
        where = f"{self.where}:{tag}"
        headers = {"Content-Type": media_type}
        response = self._http.request(
            "PUT", f"{self._base}/manifests/{tag}", where, headers, data, ok=(201,)
        )
        discard(response)
        digest = sha256_digest(data)
        named = response.headers.get("Docker-Content-Digest")
        if named and named != digest:
            raise IntegrityError(
                f"{where}: the registry stored the manifest as {named}, not {digest}"
            )
        return digest

    # --- Blobs ------------------------------------------------------------------------------

    def _blob(self, method: str, digest: str) -> urllib3.BaseHTTPResponse:
        """HEAD or GET a blob, following redirects to storage (see the module docstring)."""
        where = f"{self.where}@{digest}"
        url = f"{self._base}/blobs/{digest}"
        ok = (200, 404, *_REDIRECTS)
        response = self._http.request(method, url, where, ok=ok)
        for _hop in range(_MAX_HOPS):
            if response.status not in _REDIRECTS:
                return response
            discard(response)
            url = self._redirect_target(url, response.headers.get("Location", ""), where)
            if netloc_of(url) == self.netloc.lower():
                response = self._http.request(method, url, where, ok=ok)
            else:
                response = self._http.send(method, url, where, {})
        if response.status in _REDIRECTS:
            discard(response)
            raise StorageError(f"{where}: more than {_MAX_HOPS} redirects", reason="Redirect")
        return response

    def _redirect_target(self, url: str, location: str, where: str) -> str:
        target = urljoin(url, location)
        if not location or urlsplit(target).scheme != "https":
            raise StorageError(
                f"{where}: the registry redirects to a non-https URL", reason="Redirect"
            )
        check_hosts(f"{where} (redirect)", [netloc_of(target)], self._http.allowed_hosts)
        return target

    def blob_exists(self, digest: str) -> bool:
        response = self._blob("HEAD", digest)
        discard(response)
        if response.status in (200, 404):
            return response.status == 200
        raise registry_error(response, f"{self.where}@{digest}")

    def read_blob(self, digest: str, size: int, limit: int = MAX_SMALL) -> bytes:
        """A small blob (an image config) in memory, verified."""
        where = f"{self.where}@{digest}"
        if size > limit:
            raise StorageError(
                f"{where}: {size} bytes is too large for a config", reason="InvalidImage"
            )
        response = self._checked(self._blob("GET", digest), where)
        data = read_capped(response, limit, where)
        _verify(where, digest, size, sha256_digest(data), len(data))
        return data

    def download_blob(self, digest: str, size: int, dest: Path, progress: ProgressFn) -> None:
        """Stream a blob into ``dest`` while hashing it; IntegrityError unless both its
        size and its sha256 match the manifest."""
        where = f"{self.where}@{digest}"
        response = self._checked(self._blob("GET", digest), where)
        hasher = hashlib.sha256()
        written = 0
        try:
            with dest.open("wb") as out:
                for chunk in response.stream(_CHUNK):
                    written += len(chunk)
                    if written > size:
                        raise IntegrityError(f"{where}: the blob is longer than its {size} bytes")
                    hasher.update(chunk)
                    out.write(chunk)
                    progress(len(chunk))
        except urllib3.exceptions.HTTPError as exc:
            raise UnavailableError(f"{where}: download cut short ({type(exc).__name__})") from None
        finally:
            response.release_conn()
        _verify(where, digest, size, "sha256:" + hasher.hexdigest(), written)

    def _checked(self, response: urllib3.BaseHTTPResponse, where: str) -> urllib3.BaseHTTPResponse:
        if response.status == 200:
            return response
        raise registry_error(response, where)

    def upload_blob(self, path: Path, digest: str) -> None:
        """POST an upload session, then PUT the whole file into it (a monolithic upload)."""
        where = f"{self.where}@{digest}"
        started = self._http.request(
            "POST", f"{self._base}/blobs/uploads/", where, {"Content-Length": "0"}, ok=(202,)
        )
        discard(started)
        location = started.headers.get("Location", "")
        url = urljoin(f"{self._base}/blobs/uploads/", location)
        if not location or netloc_of(url) != self.netloc.lower() or not url.startswith("https:"):
            raise StorageError(f"{where}: the registry gave no usable upload URL", reason="Upload")
        url += ("&" if "?" in url else "?") + urlencode({"digest": digest})
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(path.stat().st_size),
        }
        with path.open("rb") as body:
            response = self._http.request("PUT", url, where, headers, body, ok=(201,))
        discard(response)


def _verify(where: str, digest: str, size: int, got: str, length: int) -> None:
    if length != size or got != digest:
        raise IntegrityError(
            f"{where}: the blob's bytes do not match its digest (got {got}, {length} bytes; "
            f"the manifest says {digest}, {size} bytes)"
        )
