"""Run one container of a pod template, as stored by the real API server, as a local process.

kwok's pods are simulated: nothing runs their containers. To show that what the operator (or
the chart) renders starts a working server, the tests take the container as the API server
holds it and run it here, with everything a kubelet would give it except the image:

* ``command``/``args`` as written (the images' ENTRYPOINT is ``modelfleet``, the executable this
  virtual environment installs);
* ``env``: plain values, ``secretKeyRef``/``configMapKeyRef`` read from the API server,
  ``fieldRef`` from the pod's identity;
* ``volumeMounts``: Secrets written out with their items and modes, emptyDirs as empty folders,
  image volumes (``volumes[].image``) as the folder the test names for their reference (what
  the kubelet would mount: the image's unpacked layers); each mount path is moved under a
  local folder and rewritten wherever the env names it;
* ports: every ``containerPort`` gets a free loopback port (``MODELFLEET_HOST`` becomes
  127.0.0.1: no test listens beyond loopback), so that the probes' named ports resolve.

``addresses`` maps cluster DNS names to loopback endpoints (``s3.storage.svc:9000`` ->
``127.0.0.1:PORT``): it stands in for the cluster's DNS and Services, nothing more.
``serve_and_predict`` starts a Deployment's runtime container, probes it and sends it the
README's predict call.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.kube import Cluster, Manifest, wait_for
from tests.helpers.waiting import http_status

ENTRYPOINT = "modelfleet"
README_REQUEST = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalPod:
    """A container started from a pod template; ``ports`` maps container ports to local ones."""

    process: subprocess.Popen[bytes]
    ports: dict[int, int]
    named_ports: dict[str, int]
    log: Path
    container: Manifest

    def probe_url(self, probe: str) -> str:
        """The URL of the container's ``readinessProbe``/``livenessProbe``/... httpGet (its
        ``scheme``, HTTP by default)."""
        get = self.container[probe]["httpGet"]
        scheme = str(get.get("scheme", "HTTP")).lower()
        return f"{scheme}://127.0.0.1:{self.local_port(get['port'])}{get['path']}"

    def local_port(self, port: str | int) -> int:
        """The loopback port standing in for a container port (by name or number)."""
        container_port = self.named_ports[port] if isinstance(port, str) else int(port)
        return self.ports[container_port]

    def url(self, port_name: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.local_port(port_name)}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = cluster.get("secret", name, namespace)
    assert secret is not None, f"Secret {namespace}/{name} does not exist"
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def _env_value(
    cluster: Cluster, namespace: str, pod: Mapping[str, str], source: Mapping[str, Any]
) -> str:
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        return _secret_data(cluster, namespace, ref["name"])[ref["key"]].decode()
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        found = cluster.get("configmap", ref["name"], namespace)
        assert found is not None, f"ConfigMap {namespace}/{ref['name']} does not exist"
        return str(found["data"][ref["key"]])
    if "fieldRef" in source:
        return pod[source["fieldRef"]["fieldPath"]]
    raise AssertionError(f"env source not handled by the test: {source}")


def _volumes(
    cluster: Cluster,
    namespace: str,
    spec: Manifest,
    container: Manifest,
    root: Path,
    images: Mapping[str, Path],
) -> dict[str, str]:
    """Lay out each mounted volume under ``root``; returns mount path -> local folder."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    moved: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if "image" in volume:
            reference = volume["image"]["reference"]
            assert reference in images, f"no unpacked image given for {reference}"
            moved[mount["mountPath"]] = str(images[reference])
            continue
        local = root / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            data = _secret_data(cluster, namespace, volume["secret"]["secretName"])
            items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
            mode = volume["secret"].get("defaultMode", 0o644)
            for item in items:
                target = local / item["path"]
                target.write_bytes(data[item["key"]])
                target.chmod(item.get("mode", mode))
        elif "emptyDir" not in volume:
            raise AssertionError(f"volume kind not handled by the test: {volume}")
        moved[mount["mountPath"]] = str(local)
    return moved


def _rewrite(value: str, replacements: Mapping[str, str]) -> str:
    """Each key replaced once, the longest first (``/tmp`` must not rewrite the local folder
    that ``/var/run/...`` was just moved to)."""
    if not replacements:
        return value
    keys = sorted(replacements, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(k) for k in keys))
    return pattern.sub(lambda match: replacements[match.group(0)], value)


def start_container(
    cluster: Cluster,
    template: Manifest,
    namespace: str,
    root: Path,
    *,
    container: str | None = None,
    addresses: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    images: Mapping[str, Path] | None = None,
) -> LocalPod:
    """Start ``container`` (default: the first) of the pod ``template`` under ``root``;
    ``images`` maps an image volume's reference to the folder standing in for its mount."""
    spec = template["spec"]
    (chosen,) = [c for c in spec["containers"] if container in (None, c["name"])][:1]
    root.mkdir(parents=True, exist_ok=True)
    pod_name = f"{template.get('metadata', {}).get('name', 'local')}-local"
    identity = {"metadata.name": pod_name, "metadata.namespace": namespace}
    mounts = _volumes(cluster, namespace, spec, chosen, root / "volumes", images or {})
    ports = {p["containerPort"]: free_port() for p in chosen.get("ports") or []}
    named = {p["name"]: p["containerPort"] for p in chosen.get("ports") or [] if "name" in p}
    replacements = dict(mounts)
    replacements.update(addresses or {})
    replacements.update(
        {f"0.0.0.0:{inner}": f"127.0.0.1:{outer}" for inner, outer in ports.items()}
    )
    env: dict[str, str] = {}
    for item in chosen.get("env") or []:
        raw = (
            item["value"]
            if "value" in item
            else _env_value(cluster, namespace, identity, item["valueFrom"])
        )
        env[item["name"]] = _rewrite(str(raw), replacements)
    for container_port, local_port in ports.items():
        for key, value in env.items():
            if value == str(container_port) and key.endswith("_PORT"):
                env[key] = str(local_port)  # MODELFLEET_PORT and the like
    if env.get("MODELFLEET_HOST") == "0.0.0.0":
        env["MODELFLEET_HOST"] = "127.0.0.1"
    argv = [
        _rewrite(a, replacements) for a in [*chosen.get("command", []), *chosen.get("args", [])]
    ]
    if not chosen.get("command"):
        argv.insert(0, ENTRYPOINT)  # the image's ENTRYPOINT
    if argv[0] == ENTRYPOINT:
        argv[0] = shutil.which(ENTRYPOINT, path=str(Path(sys.executable).parent)) or ENTRYPOINT
    log = root / f"{chosen['name']}.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFLEET_", "AWS_"))}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv,
            env={**base, "PYTHONUNBUFFERED": "1", **env, **(extra_env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    return LocalPod(process, ports, named, log, chosen)


def serve_and_predict(
    cluster: Cluster,
    namespace: str,
    isvc: str,
    root: Path,
    headers: dict[str, str] | None = None,
    verify: ssl.SSLContext | bool = True,
    **start: Any,
) -> dict[str, Any]:
    """Start the runtime container of ``<isvc>-predictor``, wait until its readiness probe
    answers 200, check its other probes, and return the README's predict call's answer; over
    HTTPS (trusting ``verify``) when its port is named ``https`` (``spec.modelfleet.tls``)."""
    deployment = cluster.get("deployment", f"{isvc}-predictor", namespace)
    assert deployment is not None
    pod = start_container(cluster, deployment["spec"]["template"], namespace, root, **start)
    scheme = "https" if "https" in pod.named_ports else "http"
    try:
        ready = pod.probe_url("readinessProbe")
        assert ready.startswith(f"{scheme}://") and ready.endswith("/v2/health/ready")
        wait_for(
            lambda: pod.process.poll() is not None or http_status(ready, verify=verify) == 200,
            60,
            "ready",
        )
        assert pod.process.poll() is None, pod.output()[-4000:]
        assert http_status(pod.probe_url("livenessProbe"), verify=verify) == 200
        assert http_status(pod.probe_url("startupProbe"), verify=verify) == 200
        response = httpx.post(
            f"{pod.url(scheme, scheme)}/v2/models/{isvc}/infer",
            json=README_REQUEST,
            headers=headers,
            verify=verify,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body
    finally:
        pod.stop()
