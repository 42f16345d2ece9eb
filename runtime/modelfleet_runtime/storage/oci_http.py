"""HTTPS to one repository of an OCI registry, authenticated: ``oci_distribution.py`` makes
its protocol calls through a ``RegistryHttp``.

Authentication answers the registry's 401 challenge: Basic with the Docker config's
credentials, or the token flow (``Bearer realm=...``: a token fetched from the realm, with
those credentials when there are any); the answer is then sent up front on later calls, and
fetched again when a token expires. A token realm must be https and admitted by
``allowed_hosts``. TLS trusts ``registry_ca_file`` (else the system's CAs); a certificate that
does not verify is a setting to fix, not an outage, so it is not retried. urllib3's own
retries are off: ``retry.py`` owns retrying. Messages name the registry and repository, never a
credential or a token.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import BinaryIO
from urllib.parse import urlencode, urlsplit

import urllib3

from ..config import Settings
from . import oci_auth
from .base import AccessDeniedError, NotFoundError, StorageError, UnavailableError
from .httpclient import TIMEOUT, status_error
from .uri import check_hosts, netloc_of

MAX_SMALL = 1024 * 1024
"""Largest error body, token answer or image config read into memory."""


class RegistryHttp:
    """Authenticated requests to one repository (``https://netloc/v2/name``). Thread-safe."""

    def __init__(self, netloc: str, name: str, settings: Settings, *, push: bool = False) -> None:
        self.netloc = netloc
        self.name = name
        self.where = f"oci://{netloc}/{name}"
        self.base = f"https://{netloc}/v2/{name}"
        ca = settings.registry_ca_file
        self._pool = urllib3.PoolManager(
            maxsize=settings.download_concurrency + 2,
            timeout=TIMEOUT,
            retries=False,
            ca_certs=str(ca) if ca else None,
        )
        self._config = settings.registry_config or oci_auth.default_config_path()
        self.allowed_hosts = settings.allowed_hosts
        self._scope = f"repository:{name}:{'pull,push' if push else 'pull'}"
        self._authorization: str | None = None
        self._lock = threading.Lock()

    def send(
        self,
        method: str,
        url: str,
        where: str,
        headers: Mapping[str, str],
        body: bytes | BinaryIO | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """One request as given (no Authorization added: also for the hosts a registry
        redirects to); any status is returned, its body unread."""
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
            raise tls_error(exc, where) from None
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
            response = self.send(method, url, where, {**(headers or {}), **auth}, body)
            if response.status != 401:
                break
            challenges = oci_auth.parse_challenges(response.headers.getlist("WWW-Authenticate"))
            discard(response)
            if attempt == 1 or not self._answer(challenges, where, failed=sent):
                raise self._denied(where, sent)
            if body is not None and not isinstance(body, bytes):
                body.seek(start)
        if response.status in ok:
            return response
        raise registry_error(response, where)

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
        check_hosts(f"{where} (token realm)", [netloc_of(realm)], self.allowed_hosts)
        query: list[tuple[str, str]] = []
        if "service" in challenge.params:
            query.append(("service", challenge.params["service"]))
        for scope in dict.fromkeys([self._scope, challenge.params.get("scope", "")]):
            if scope:
                query.append(("scope", scope))
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        headers = {"Authorization": creds.basic} if creds else {}
        response = self.send("GET", url, f"{where} (token realm)", headers)
        if response.status in (401, 403):
            discard(response)
            raise self._denied(where, "token" if creds else None)
        if response.status != 200:
            raise registry_error(response, f"{where} (token realm)")
        try:
            body = json.loads(read_capped(response, MAX_SMALL, where))
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


def discard(response: urllib3.BaseHTTPResponse) -> None:
    """Read and drop the rest of an answer, returning its connection to the pool."""
    response.drain_conn()
    response.release_conn()


def read_capped(response: urllib3.BaseHTTPResponse, limit: int, where: str) -> bytes:
    """The whole body, refused past ``limit`` bytes (a registry is not trusted with memory)."""
    try:
        data = response.read(limit + 1)
    except urllib3.exceptions.HTTPError as exc:
        raise UnavailableError(f"{where}: answer cut short ({type(exc).__name__})") from None
    finally:
        response.release_conn()
    if len(data) > limit:
        raise StorageError(f"{where}: the answer exceeds {limit} bytes", reason="InvalidImage")
    return data


def registry_error(response: urllib3.BaseHTTPResponse, where: str) -> StorageError:
    """The StorageError for a failed registry call, with the registry's error code."""
    status = response.status
    code = ""
    try:
        errors = json.loads(read_capped(response, MAX_SMALL, where)).get("errors") or []
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


def tls_error(exc: urllib3.exceptions.SSLError, where: str) -> StorageError:
    """Not retryable: a certificate that does not verify is a setting to fix."""
    what = "certificate verify failed" if "verify failed" in str(exc) else "TLS handshake failed"
    return StorageError(
        f"{where}: {what}; if the registry uses a private CA, set registry_ca_file "
        "(--registry-ca-file, MODELFLEET_REGISTRY_CA_FILE) to that CA's PEM file",
        reason="TLSError",
    )
