"""A real OCI registry for tests: Debian's ``docker-registry`` (the CNCF distribution registry
2.8) on 127.0.0.1, a free port, TLS with a throwaway CA, htpasswd basic auth (bcrypt) or the
token flow, filesystem storage in a temporary folder.

``run_registry`` starts one and stops it on the way out; the storage tests' ``registry``
fixture wraps it. A ``Registry`` knows its host, CA bundle, user, password and the Docker
config file that holds them, and can push blobs and manifests by hand (over httpx, not through
the runtime's own client, so the runtime is tested against an independent writer).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import bcrypt
import httpx
import pytest

from tests.helpers.runtime import free_port, stop_process_group
from tests.helpers.tls import Tls, make_tls
from tests.helpers.waiting import wait_until

START_DEADLINE = 30.0
USERNAME = "modelfleet"
INSTALL_HINT = "apt-get install -y docker-registry (scripts/test does this)"


@dataclass(frozen=True)
class Registry:
    host: str
    """``127.0.0.1:PORT``, as an ``oci://`` URI and a Docker config name it."""
    tls: Tls
    username: str
    password: str
    docker_config: Path
    """A Docker config.json holding ``username``/``password`` for ``host``."""
    storage: Path
    """The registry's filesystem storage root."""
    log: Path

    @property
    def ca(self) -> Path:
        return self.tls.ca

    def trust(self) -> ssl.SSLContext:
        """A client context that trusts the registry's CA (and nothing else)."""
        return ssl.create_default_context(cafile=self.ca)

    def uri(self, repository: str, reference: str = "latest") -> str:
        """``oci://host/repository:tag``, or ``@sha256:...`` for a digest."""
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"oci://{self.host}/{repository}{sep}{reference}"

    def env(self) -> dict[str, str]:
        """The runtime settings that trust this registry and log in to it."""
        return {
            "MODELFLEET_REGISTRY_CONFIG": str(self.docker_config),
            "MODELFLEET_REGISTRY_CA_FILE": str(self.ca),
        }

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes on disk."""
        hexdigest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"https://{self.host}",
            verify=self.trust(),
            auth=(self.username, self.password),
            timeout=30,
        )

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` as a blob (POST, then a monolithic PUT); return its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with self.client() as client:
            started = client.post(f"/v2/{repository}/blobs/uploads/")
            assert started.status_code == 202, started.text
            location = started.headers["Location"]  # keeps the upload's state in its query
            done = client.put(
                f"{location}{'&' if '?' in location else '?'}{urlencode({'digest': digest})}",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert done.status_code == 201, done.text
        return digest

    def put_manifest(self, repository: str, reference: str, manifest: dict[str, Any]) -> str:
        """PUT a manifest under a tag (or its digest); return its digest."""
        body = json.dumps(manifest).encode()
        with self.client() as client:
            response = client.put(
                f"/v2/{repository}/manifests/{reference}",
                content=body,
                headers={"Content-Type": manifest["mediaType"]},
            )
            assert response.status_code == 201, response.text
        return "sha256:" + hashlib.sha256(body).hexdigest()


def write_docker_config(path: Path, host: str, username: str, password: str) -> Path:
    """A Docker config.json with ``username:password`` for ``host``, as ``docker login``
    writes it."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


def _config(folder: Path, port: int, tls: Tls, auth: dict[str, Any], redirect: str | None) -> Path:
    storage: dict[str, Any] = {
        "filesystem": {"rootdirectory": str(folder / "storage")},
        "delete": {"enabled": True},
        "maintenance": {"uploadpurging": {"enabled": False}},
    }
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": storage,
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": secrets.token_hex(16),
            "tls": {"certificate": str(tls.cert), "key": str(tls.key)},
        },
        "auth": auth,
        "health": {"storagedriver": {"enabled": False}},
    }
    if redirect is not None:  # blob GETs answered with a redirect to ``redirect`` + path
        config["middleware"] = {"storage": [{"name": "redirect", "options": {"baseurl": redirect}}]}
    path = folder / "config.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@contextmanager
def run_registry(
    folder: Path,
    *,
    token_auth: dict[str, str] | None = None,
    redirect: str | None = None,
    tls: Tls | None = None,
) -> Iterator[Registry]:
    """Start a registry under ``folder``. Basic auth from an htpasswd file unless
    ``token_auth`` (realm, service, issuer, rootcertbundle) selects the token flow;
    ``redirect`` turns on distribution's redirect middleware (blobs served from elsewhere)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail(f"docker-registry is not installed: {INSTALL_HINT}")
    folder.mkdir(parents=True, exist_ok=True)
    tls = tls or make_tls(folder / "tls")
    password = secrets.token_urlsafe(16)
    htpasswd = folder / "htpasswd"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    htpasswd.write_text(f"{USERNAME}:{hashed}\n")
    auth = (
        {"token": token_auth} if token_auth else {"htpasswd": {"realm": "t", "path": str(htpasswd)}}
    )
    port = free_port()
    config = _config(folder, port, tls, auth, redirect)
    host = f"127.0.0.1:{port}"
    docker_config = write_docker_config(folder / "docker-config.json", host, USERNAME, password)
    log = folder / "registry.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    registry = Registry(host, tls, USERNAME, password, docker_config, folder / "storage", log)
    try:
        wait_until(lambda: process.poll() is not None or _answers(registry), START_DEADLINE, host)
        assert process.poll() is None, log.read_text()[-3000:]
        yield registry
    finally:
        stop_process_group(process)


def _answers(registry: Registry) -> bool:
    try:
        status = httpx.get(f"https://{registry.host}/v2/", verify=registry.trust(), timeout=1)
    except httpx.TransportError:
        return False
    return status.status_code in (200, 401)
