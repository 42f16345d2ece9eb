"""The only module that talks to the Kubernetes API server.

The live half (``reconcile.py``, ``scheduler.py``, ``peering.py``) calls it through the
:class:`Applier` protocol, built in ``handlers.py``'s start-up handler; tests and the
benchmark use the same client against the kmock emulator. Writes go through one idempotent
path, server-side apply (``PATCH`` with ``application/apply-patch+yaml``, field manager
``modelfleet``, ``force=true``), so create and update are the same call and there is no
read-modify-write race.

Errors are mapped once, here: 409, 429, 5xx, timeouts and connection errors become
``kopf.TemporaryError`` with short delays (429 honours ``Retry-After``); a 401 logs in again
and retries once, then is temporary too; any other 4xx is a ``kopf.PermanentError``. 404 on
reads and deletes is not an error: the object is simply absent.

Secrets are never read whole: :meth:`KubeClient.secret_summary` asks for one Secret as a Table
(what ``kubectl get secret`` prints: type and number of keys) without the object, so no
Secret value ever reaches the operator, its memory or its logs.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp
import kopf

from modelfleet_operator.kinds import KindRef
from modelfleet_operator.status import SecretSummary

Manifest = dict[str, Any]

FIELD_MANAGER = "modelfleet"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_CONTENT_TYPE = "application/merge-patch+json"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
"""A Table of printed columns; deliberately no fallback to the object itself (its data)."""
SECRETS = KindRef("v1", "Secret", "secrets")

CONFLICT_DELAY = 1.0
"""Seconds before retrying after a 409: another writer won a race; re-applying is cheap."""
SERVER_ERROR_DELAY = 2.0
"""Seconds before retrying after a 5xx or a timeout: short, as the targets are seconds."""
UNAUTHORIZED_DELAY = 10.0
"""Seconds before retrying with credentials the API server refused even after a new login."""
THROTTLE_DELAY = 3.0
"""Seconds before retrying after a 429 that carries no usable ``Retry-After``."""
MAX_RETRY_AFTER = 60.0
"""Upper bound on a server's ``Retry-After``, so that one bad header cannot stall a resource."""
log = logging.getLogger(__name__)


class Applier(Protocol):
    """The seam between the reconcile logic and the API server."""

    async def apply(self, ref: KindRef, manifest: Manifest) -> Manifest:
        """Server-side apply ``manifest``; returns the object as stored."""
        ...

    async def delete(self, ref: KindRef, namespace: str, name: str) -> None:
        """Delete one object; an absent object is not an error."""
        ...

    async def list(
        self, ref: KindRef, namespace: str | None, labels: Mapping[str, str]
    ) -> list[Manifest]:
        """Objects of ``ref`` in ``namespace`` matching every label; [] if the kind is unknown."""
        ...

    async def get(self, ref: KindRef, namespace: str, name: str) -> Manifest | None:
        """One object, or ``None`` when it does not exist."""
        ...

    async def patch_status(self, ref: KindRef, namespace: str, name: str, status: Manifest) -> None:
        """Merge-patch the ``status`` subresource."""
        ...

    async def secret_summary(self, namespace: str, name: str) -> SecretSummary | None:
        """One Secret's type and number of keys, never its values; ``None`` when absent."""
        ...


def retry_after(headers: Mapping[str, str]) -> float:
    """Seconds to wait after a 429, from ``Retry-After`` (seconds form), bounded."""
    try:
        value = float(headers.get("Retry-After", ""))
    except ValueError:
        return THROTTLE_DELAY
    return min(max(value, 0.5), MAX_RETRY_AFTER)


class NamespaceTerminating(kopf.PermanentError):
    """The namespace is being deleted: the API server refuses new objects in it (403, cause
    ``NamespaceTerminating``) and everything in it is about to go. Not worth a retry, a log
    line or an Event: a child deleted by the namespace controller triggers a reconcile that
    would re-create it (seen on the real API server, never on the emulator)."""


class Invalid(kopf.PermanentError):
    """422: the API server refused the object as invalid."""


class Forbidden(kopf.PermanentError):
    """403: the operator's role does not allow the call (a cluster whose RBAC was narrowed
    after the chart granted it, say). A caller that can say so in a status catches it."""


def _terminating(status: int, text: str) -> bool:
    if status != 403:
        return False
    try:
        causes = (json.loads(text).get("details") or {}).get("causes") or []
    except (ValueError, AttributeError):
        return False
    return any(cause.get("reason") == "NamespaceTerminating" for cause in causes)


def map_error(status: int, headers: Mapping[str, str], text: str) -> Exception:
    """Turn an HTTP error status into the kopf error that says whether to retry and when."""
    message = f"API error {status}: {text[:300]}"
    if _terminating(status, text):
        return NamespaceTerminating(message)
    if status == 409:
        return kopf.TemporaryError(message, delay=CONFLICT_DELAY)
    if status == 429:
        return kopf.TemporaryError(message, delay=retry_after(headers))
    if status >= 500:
        return kopf.TemporaryError(message, delay=SERVER_ERROR_DELAY)
    if status == 401:  # credentials the kubelet has not rotated in yet: try again later
        return kopf.TemporaryError(message, delay=UNAUTHORIZED_DELAY)
    if status == 422:
        return Invalid(message)
    if status == 403:
        return Forbidden(message)
    return kopf.PermanentError(message)


def summary_from_table(table: Mapping[str, Any]) -> SecretSummary:
    """A Secret's type and key count from the API server's Table of it (columns Name, Type,
    Data, Age, as ``kubectl get secret`` prints them)."""
    columns = [str(c.get("name")) for c in table.get("columnDefinitions") or []]
    rows = table.get("rows") or []
    if len(rows) != 1 or not {"Type", "Data"} <= set(columns):
        raise kopf.PermanentError(f"unexpected Table of a Secret: columns {columns}")
    cells = dict(zip(columns, rows[0].get("cells") or [], strict=False))
    return SecretSummary(type=str(cells["Type"]), keys=int(cells["Data"]))


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=info.ca_path)
    elif info.ca_data:
        data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        context.load_verify_locations(cadata=data)
    if info.certificate_path and info.private_key_path:
        context.load_cert_chain(info.certificate_path, info.private_key_path)
    elif info.certificate_data and info.private_key_data:
        _load_cert_data(context, info.certificate_data, info.private_key_data)
    return context


def _load_cert_data(context: ssl.SSLContext, cert: str | bytes, key: str | bytes) -> None:
    # ssl only loads client certificates from files: write them to private temporary files.
    with tempfile.NamedTemporaryFile() as cert_file, tempfile.NamedTemporaryFile() as key_file:
        for handle, data in ((cert_file, cert), (key_file, key)):
            raw = data.encode() if isinstance(data, str) else data
            handle.write(base64.b64decode(raw) if b"-----BEGIN" not in raw else raw)
            handle.flush()
        context.load_cert_chain(cert_file.name, key_file.name)


class KubeClient:
    """An :class:`Applier` over aiohttp, with the credentials kopf logs in with.

    ``login`` is called at the start and again on a 401: a pod's service-account token is a
    file the kubelet rotates (bound tokens expire), so a stale token is re-read, not fatal.
    """

    def __init__(self, login: Callable[[], kopf.ConnectionInfo], *, timeout: float = 10.0) -> None:
        self._login = login
        self._info = login()
        # Per socket operation, not in total: a total timeout also counts the wait for a free
        # connection of the pool, so under a burst (200 InferenceServices at once, 32
        # connections, a busy real API server) requests timed out before they were sent. A
        # hung request still times out: no byte within ``timeout``.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=_ssl_context(self._info), limit=32)
            self._session = aiohttp.ClientSession(
                base_url=self._info.server.rstrip("/") + "/",
                connector=connector,
                headers=self._info.as_http_headers(),
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (at operator clean-up)."""
        if self._session is not None:
            await self._session.close()

    async def _relogin(self) -> bool:
        """Log in again; True when the credentials changed (worth one more try)."""
        fresh = self._login()
        if fresh.as_http_headers() == self._info.as_http_headers():
            return False
        self._info = fresh
        await self.close()  # the next request opens a session with the new headers
        return True

    async def _send(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Mapping[str, str], str]:
        """One request: its status, headers and body; no answer is a temporary error."""
        try:
            async with self._client().request(method, path.lstrip("/"), **kwargs) as response:
                return response.status, response.headers, await response.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise kopf.TemporaryError(
                f"API unreachable: {exc!r}", delay=SERVER_ERROR_DELAY
            ) from exc

    async def _request(
        self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any
    ) -> Manifest | None:
        status, headers, text = await self._send(method, path, **kwargs)
        if status == 401 and await self._relogin():
            log.info("API answered 401: logged in again with fresh credentials")
            status, headers, text = await self._send(method, path, **kwargs)
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            raise map_error(status, headers, text)
        return json.loads(text) if text else {}

    async def apply(self, ref: KindRef, manifest: Manifest) -> Manifest:
        """Server-side apply; an apply refused as invalid is repaired once (see below)."""
        try:
            return await self._apply(ref, manifest)
        except Invalid as refused:
            if not await self._repair(ref, manifest):
                raise
            log.warning("Repaired %s %s after: %s", ref.kind, manifest["metadata"]["name"], refused)
            return await self._apply(ref, manifest)

    async def _apply(self, ref: KindRef, manifest: Manifest) -> Manifest:
        meta = manifest["metadata"]
        result = await self._request(
            "PATCH",
            ref.path(meta["namespace"], meta["name"]),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            data=json.dumps(manifest),  # JSON is YAML: the apply content type accepts it
            headers={"Content-Type": APPLY_CONTENT_TYPE},
        )
        assert result is not None  # 404 raises here: missing_ok is off
        return result

    async def _repair(self, ref: KindRef, manifest: Manifest) -> bool:
        """Put back our ``spec`` with a JSON merge patch, which replaces lists whole.

        Needed where someone else edited the key of an entry in a keyed list: a Service port
        changed from 80 to 8888 by ``kubectl patch`` is a new entry owned by kubectl, which
        a forced apply keeps beside ours (80), so the apply is refused for a duplicate port
        name (422, seen on the real API server). False when the object does not exist."""
        meta = manifest["metadata"]
        found = await self._request(
            "PATCH",
            ref.path(meta["namespace"], meta["name"]),
            missing_ok=True,
            params={"fieldManager": FIELD_MANAGER},
            data=json.dumps({"spec": manifest.get("spec") or {}}),
            headers={"Content-Type": MERGE_CONTENT_TYPE},
        )
        return found is not None

    async def serves(self, api_version: str, plural: str) -> bool:
        """Whether the API server serves ``plural`` in ``api_version`` (discovery: one GET,
        allowed to every authenticated client)."""
        found = await self._request("GET", f"/apis/{api_version}", missing_ok=True)
        return any(r.get("name") == plural for r in (found or {}).get("resources") or [])

    async def version(self) -> Manifest:
        """The API server's ``GET /version`` (allowed to every client by the default
        ``system:public-info-viewer`` role: no RBAC rule needed)."""
        found = await self._request("GET", "/version")
        assert found is not None  # 404 raises here: missing_ok is off
        return found

    async def delete(self, ref: KindRef, namespace: str, name: str) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        await self._request("DELETE", ref.path(namespace, name), missing_ok=True, json=body)

    async def list(
        self, ref: KindRef, namespace: str | None, labels: Mapping[str, str]
    ) -> list[Manifest]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        result = await self._request(
            "GET", ref.path(namespace), missing_ok=True, params={"labelSelector": selector}
        )  # 404: the kind is not installed (no KEDA), so there are none
        return list(result.get("items") or []) if result else []

    async def get(self, ref: KindRef, namespace: str, name: str) -> Manifest | None:
        return await self._request("GET", ref.path(namespace, name), missing_ok=True)

    async def patch_status(self, ref: KindRef, namespace: str, name: str, status: Manifest) -> None:
        await self._request(
            "PATCH",
            ref.path(namespace, name) + "/status",
            missing_ok=True,  # deleted meanwhile: nothing left to report on
            data=json.dumps({"status": status}),
            headers={"Content-Type": MERGE_CONTENT_TYPE},
        )

    async def secret_summary(self, namespace: str, name: str) -> SecretSummary | None:
        table = await self._request(
            "GET",
            SECRETS.path(namespace, name),
            missing_ok=True,
            params={"includeObject": "None"},
            headers={"Accept": TABLE_ACCEPT},
        )
        return None if table is None else summary_from_table(table)
