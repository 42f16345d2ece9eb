"""The OCI distribution protocol over HTTPS: the calls ``oci.py`` makes to one repository.

Manifests are resolved and fetched with the OCI and Docker media types in ``Accept``; every
byte fetched (manifest, config, layer) is checked against its sha256 digest while it streams.
Authentication answers the registry's 401 challenge: Basic with the Docker config's
credentials, or the token flow (``Bearer realm=...``: a token fetched from the realm, with
those credentials when there are any), and the answer is then sent up front on later calls.

Redirects are followed only for blobs (registries hand out blob downloads from object storage
or a CDN), only to https, only to hosts ``allowed_hosts`` admits, and without the
``Authorization`` header; a token realm is checked the same way. Every blob is verified by
digest, so a redirect cannot swap its bytes. urllib3's own retries are off: ``retry.py`` owns
retrying. Messages name the registry, repository and digest, never a credential or a token.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3

from ..config import Settings
from . import oci_auth
from .base import (
    AccessDeniedError,
    IntegrityError,
    NotFoundError,
    ProgressFn,
    StorageError,
    UnavailableError,
)
from .httpclient import TIMEOUT, status_error
from .uri import check_hosts, netloc_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
MAX_MANIFEST = 4 * 1024 * 1024
"""Largest manifest accepted (distribution's own limit for a PUT)."""
_MAX_SMALL = 1024 * 1024
_CHUNK = 1024 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_HOPS = 3


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Repository:
    """One repository of one registry (``https://netloc/v2/name``). Thread-safe."""

    def __init__(self, netloc: str, name: str, settings: Settings, *, push: bool = False) -> None:
        self.netloc = netloc
        self.name = name
        self.where = f"oci://{netloc}/{name}"
        self._base = f"https://{netloc}/v2/{name}"
        ca = settings.registry_ca_file
        self._pool = urllib3.PoolManager(
            maxsize=settings.download_concurrency + 2,
            timeout=TIMEOUT,
            retries=False,
            ca_certs=str(ca) if ca else None,
        )
        self._config = settings.registry_config or oci_auth.default_config_path()
        self._allowed_hosts = settings.allowed_hosts
        self._scope = f"repository:{name}:{'pull,push' if push else 'pull'}"
        self._authorization: str | None = None
        self._lock = threading.Lock()

    # --- Requests ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        where: str,
        headers: Mapping[str, str],
        body: bytes | BinaryIO | None = None,
    ) -> urllib3.BaseHTTPResponse:
        try:
            return self._pool.request(
                method,
                url,
                body=body,
                headers=dict(headers),
                preload_content=False,
                redirect=False,
            )
        except urllib3.exceptions.SSLError as exc:
            raise _tls_error(exc, where) from None
        except urllib3.exceptions.HTTPError as exc:
            raise UnavailableError(f"{where}: cannot connect ({type(exc).__name__})") from None

    def request(
        self,
        method: str,
        url: str,
        where: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
        *,
        ok: tuple[int, ...] = (200,),
    ) -> urllib3.BaseHTTPResponse:
        """Send a request to the registry, answering one 401 challenge; the body of a
        status in ``ok`` is left unread, any other status raises."""
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        for attempt in range(2):
            sent = self._authorization
            auth = {"Authorization": sent} if sent else {}
            response = self._send(method, url, where, {**(headers or {}), **auth}, body)
            if response.status != 401:
                break
            challenges = oci_auth.parse_challenges(response.headers.getlist("WWW-Authenticate"))
            _discard(response)
            if attempt == 1 or not self._answer(challenges, where, failed=sent):
                raise self._denied(where, sent)
            if body is not None and not isinstance(body, bytes):
                body.seek(start)
        if response.status in ok:
            return response
        raise _error(response, where)

    def _answer(self, challenges: list[oci_auth.Challenge], where: str, failed: str | None) -> bool:
        """Set the Authorization for the next try; False when there is nothing new to try."""
        challenge = oci_auth.pick(challenges)
        with self._lock:
            if self._authorization != failed:
                return True  # another thread has already authenticated
            creds = self._credentials()
            if challenge is None or (challenge.scheme == "basic" and creds is None):
                return False
            if challenge.scheme == "basic":
                assert creds is not None
                answer = creds.basic
            else:
                answer = "Bearer " + self._token(challenge, creds, where)
            if answer == failed:
                return False
            self._authorization = answer
            return True

    def _credentials(self) -> oci_auth.Credentials | None:
        if self._config is None:
            return None
        return oci_auth.load_credentials(self._config, self.netloc)

    def _token(
        self, challenge: oci_auth.Challenge, creds: oci_auth.Credentials | None, where: str
    ) -> str:
        realm = challenge.params.get("realm", "")
        if urlsplit(realm).scheme != "https":
            raise AccessDeniedError(f"{where}: the registry's token realm is not an https URL")
        check_hosts(f"{where} (token realm)", [netloc_of(realm)], self._allowed_hosts)
        query: list[tuple[str, str]] = []
        if "service" in challenge.params:
            query.append(("service", challenge.params["service"]))
        for scope in dict.fromkeys([self._scope, challenge.params.get("scope", "")]):
            if scope:
                query.append(("scope", scope))
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        headers = {"Authorization": creds.basic} if creds else {}
        response = self._send("GET", url, f"{where} (token realm)", headers)
        if response.status in (401, 403):
            _discard(response)
            raise self._denied(where, "token" if creds else None)
        if response.status != 200:
            raise _error(response, f"{where} (token realm)")
        try:
            body = json.loads(_read_capped(response, _MAX_SMALL, where))
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AccessDeniedError(f"{where}: the token realm answered without a token")
        return token

    def _denied(self, where: str, sent: str | None) -> AccessDeniedError:
        if sent is None and self._config is None:
            hint = (
                "no registry config found (set registry_config, MODELFLEET_REGISTRY_CONFIG, "
                "to a Docker config.json)"
            )
        elif sent is None:
            hint = f"no credentials for {self.netloc} in {self._config}"
        else:
            hint = f"check the credentials for {self.netloc} in {self._config}"
        return AccessDeniedError(f"{where}: access denied (HTTP 401); {hint}")

    # --- Manifests --------------------------------------------------------------------------

    def resolve(self, tag: str) -> str:
        """The digest ``tag`` points at now (a HEAD: registries do not count it as a pull)."""
        where = f"{self.where}:{tag}"
        url = f"{self._base}/manifests/{tag}"
        response = self.request("HEAD", url, where, {"Accept": ACCEPT})
        _discard(response)
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        return sha256_digest(self.manifest(tag)[0])  # a registry that omits the header

    def manifest(self, reference: str) -> tuple[bytes, str]:
        """The manifest's bytes and media type, checked against the digest it is fetched by
        (or, by tag, against the digest the registry names)."""
        sep = "@" if reference.startswith("sha256:") else ":"
        where = f"{self.where}{sep}{reference}"
        response = self.request(
            "GET", f"{self._base}/manifests/{reference}", where, {"Accept": ACCEPT}
        )
        named = response.headers.get("Docker-Content-Digest")
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        data = _read_capped(response, MAX_MANIFEST, where)
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
        response = self.request(
            "PUT", f"{self._base}/manifests/{tag}", where, headers, data, ok=(201,)
        )
        _discard(response)
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
        response = self.request(method, url, where, ok=ok)
        for _hop in range(_MAX_HOPS):
            if response.status not in _REDIRECTS:
                return response
            _discard(response)
            url = self._redirect_target(url, response.headers.get("Location", ""), where)
            if netloc_of(url) == self.netloc.lower():
                response = self.request(method, url, where, ok=ok)
            else:
                response = self._send(method, url, where, {})
        if response.status in _REDIRECTS:
            _discard(response)
            raise StorageError(f"{where}: more than {_MAX_HOPS} redirects", reason="Redirect")
        return response

    def _redirect_target(self, url: str, location: str, where: str) -> str:
        target = urljoin(url, location)
        if not location or urlsplit(target).scheme != "https":
            raise StorageError(
                f"{where}: the registry redirects to a non-https URL", reason="Redirect"
            )
        check_hosts(f"{where} (redirect)", [netloc_of(target)], self._allowed_hosts)
        return target

    def blob_exists(self, digest: str) -> bool:
        response = self._blob("HEAD", digest)
        _discard(response)
        if response.status in (200, 404):
            return response.status == 200
        raise _error(response, f"{self.where}@{digest}")

    def read_blob(self, digest: str, size: int, limit: int = _MAX_SMALL) -> bytes:
        """A small blob (an image config) in memory, verified."""
        where = f"{self.where}@{digest}"
        if size > limit:
            raise StorageError(
                f"{where}: {size} bytes is too large for a config", reason="InvalidImage"
            )
        response = self._checked(self._blob("GET", digest), where)
        data = _read_capped(response, limit, where)
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
        raise _error(response, where)

    def upload_blob(self, path: Path, digest: str) -> None:
        """POST an upload session, then PUT the whole file into it (a monolithic upload)."""
        where = f"{self.where}@{digest}"
        started = self.request(
            "POST", f"{self._base}/blobs/uploads/", where, {"Content-Length": "0"}, ok=(202,)
        )
        _discard(started)
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
            response = self.request("PUT", url, where, headers, body, ok=(201,))
        _discard(response)


def _verify(where: str, digest: str, size: int, got: str, length: int) -> None:
    if length != size or got != digest:
        raise IntegrityError(
            f"{where}: the blob's bytes do not match its digest (got {got}, {length} bytes; "
            f"the manifest says {digest}, {size} bytes)"
        )


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    response.drain_conn()
    response.release_conn()


def _read_capped(response: urllib3.BaseHTTPResponse, limit: int, where: str) -> bytes:
    try:
        data = response.read(limit + 1)
    except urllib3.exceptions.HTTPError as exc:
        raise UnavailableError(f"{where}: answer cut short ({type(exc).__name__})") from None
    finally:
        response.release_conn()
    if len(data) > limit:
        raise StorageError(f"{where}: the answer exceeds {limit} bytes", reason="InvalidImage")
    return data


def _error(response: urllib3.BaseHTTPResponse, where: str) -> StorageError:
    """The StorageError for a failed registry call, with the registry's error code."""
    status = response.status
    code = ""
    try:
        errors = json.loads(_read_capped(response, _MAX_SMALL, where)).get("errors") or []
        code = str(errors[0].get("code", "")) if errors else ""
    except (StorageError, ValueError, AttributeError, TypeError):
        pass
    if status == 404:
        return NotFoundError(f"{where}: not found ({code or 'HTTP 404'})")
    if status == 403:
        return AccessDeniedError(
            f"{where}: access denied ({code or 'HTTP 403'}); check credentials"
        )
    if status in (401, 408, 429) or status >= 500:
        return status_error(status, where)
    return StorageError(
        f"{where}: registry error {code or '-'} (HTTP {status})", reason="RegistryError"
    )


def _tls_error(exc: urllib3.exceptions.SSLError, where: str) -> StorageError:
    # Not retried: a certificate that does not verify is a setting to fix, not an outage.
    what = "certificate verify failed" if "verify failed" in str(exc) else "TLS handshake failed"
    return StorageError(
        f"{where}: {what}; if the registry uses a private CA, set registry_ca_file "
        "(--registry-ca-file, MODELFLEET_REGISTRY_CA_FILE) to that CA's PEM file",
        reason="TLSError",
    )
