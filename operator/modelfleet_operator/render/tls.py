"""TLS on the runtime's endpoints (``spec.modelfleet.tls``): what changes in the rendered pod
template and Services when it is on. Each function takes the plain manifest ``deployment.py``
or ``network.py`` built and returns it with TLS applied (the same object when TLS is off), so
the plain shapes stay written once and new probes or ports are covered without an edit here.

With TLS on (issue 12's contract with the runtime):

* the whole kubernetes.io/tls Secret is a Secret volume mounted read-only at ``TLS_DIR``, not
  through ``subPath``: the kubelet updates a mounted Secret in place (an atomic ``..data``
  symlink swap) when cert-manager renews it, and the runtime re-reads the files, so a renewal
  needs no restart;
* ``MODELFLEET_TLS_CERT_FILE`` / ``MODELFLEET_TLS_KEY_FILE`` (and, with clientAuth Require,
  ``MODELFLEET_TLS_CLIENT_CA_FILE``) point the runtime at the files; both ports then speak TLS
  only;
* the container ports are named ``https`` and ``grpcs`` and the Services target those names,
  so while pods move between plain and TLS a Service only ever routes to pods that speak its
  protocol. The Service's HTTP port is 443 (``https://<name>.<namespace>.svc`` needs no port),
  gRPC stays on 8081; both carry appProtocol ``https``: gRPC over TLS is HTTP/2 over TLS,
  negotiated by ALPN, and ``grpc`` would tell a mesh such as Istio to expect cleartext;
* HTTP probes use ``scheme: HTTPS`` (the kubelet does not verify the certificate). With
  clientAuth Require the kubelet has no client certificate and the runtime exempts no path
  from mutual TLS, so every probe becomes a ``tcpSocket`` check of the HTTPS port: liveness
  still means "the process answers", but readiness then means "listening", not "a model
  version is loaded" (docs/inferenceservice.md, "TLS", says what that costs);
* Prometheus' scrape annotations say ``scheme: https``.

Called by ``render.deployment`` and ``render.network``; pure.
"""

from __future__ import annotations

import copy
from typing import Any

from modelfleet_operator.parse import ParsedService
from modelfleet_operator.spec import TLSSpec
from modelfleet_runtime.config import ENV_PREFIX

TLS_DIR = "/etc/modelfleet/tls"
"""Where the Secret is mounted in the runtime container."""
VOLUME = "tls"
CERT_KEY, KEY_KEY, CA_KEY = "tls.crt", "tls.key", "ca.crt"
"""The keys of a kubernetes.io/tls Secret (``ca.crt``: cert-manager's issuing CA)."""
PLAIN_PORTS = {"http": "https", "grpc": "grpcs"}
"""Container and Service port names: plain -> TLS."""
HTTP_PORT, HTTPS_PORT = 80, 443
"""The Service's HTTP port, plain and TLS."""
APP_PROTOCOL = "https"
SETTINGS = {
    "tls_cert_file": CERT_KEY,
    "tls_key_file": KEY_KEY,
    "tls_client_ca_file": CA_KEY,
}
"""The runtime's TLS settings (``modelfleet_runtime.config.Settings`` field names, issue 12's
contract) and the Secret key each one reads."""


def tls_of(svc: ParsedService) -> TLSSpec | None:
    """The InferenceService's TLS settings, or None when its endpoints are plain."""
    return svc.spec.modelfleet.tls


def url_scheme(svc: ParsedService) -> str:
    """``https`` with TLS, else ``http``: the scheme of ``status.url``."""
    return "https" if tls_of(svc) is not None else "http"


def service_http_port(svc: ParsedService) -> int:
    """The Service's HTTP port: 443 with TLS, else 80."""
    return HTTPS_PORT if tls_of(svc) is not None else HTTP_PORT


def env(tls: TLSSpec) -> list[dict[str, Any]]:
    """The runtime's TLS variables: the mounted files, the client CA only with Require."""
    fields = [f for f in SETTINGS if f != "tls_client_ca_file" or tls.client_auth == "Require"]
    return [{"name": ENV_PREFIX + f.upper(), "value": f"{TLS_DIR}/{SETTINGS[f]}"} for f in fields]


def secure_pod_template(svc: ParsedService, template: dict[str, Any]) -> dict[str, Any]:
    """``template`` with TLS applied to every container, its volume and scrape annotations."""
    tls = tls_of(svc)
    if tls is None:
        return template
    out = copy.deepcopy(template)
    pod = out["spec"]
    pod["containers"] = [_secure_container(tls, c) for c in pod["containers"]]
    pod["volumes"] = [
        *pod.get("volumes", []),
        {"name": VOLUME, "secret": {"secretName": tls.secret_name, "defaultMode": 0o440}},
    ]
    annotations = out.get("metadata", {}).get("annotations") or {}
    if "prometheus.io/scrape" in annotations:
        annotations["prometheus.io/scheme"] = "https"
    return out


def _secure_container(tls: TLSSpec, container: dict[str, Any]) -> dict[str, Any]:
    out = dict(container)
    out["ports"] = [
        {**p, "name": PLAIN_PORTS.get(p.get("name", ""), p.get("name"))}
        for p in container.get("ports", [])
    ]
    out["env"] = [*container.get("env", []), *env(tls)]
    out["volumeMounts"] = [
        *container.get("volumeMounts", []),
        {"name": VOLUME, "mountPath": TLS_DIR, "readOnly": True},
    ]
    for key, probe in container.items():
        if key.endswith("Probe") and isinstance(probe, dict):
            out[key] = _secure_probe(tls, probe)
    return out


def _secure_probe(tls: TLSSpec, probe: dict[str, Any]) -> dict[str, Any]:
    """An httpGet probe on the HTTP port over HTTPS; with Require, a tcpSocket check of it."""
    get = probe.get("httpGet")
    if not isinstance(get, dict) or get.get("port") not in PLAIN_PORTS:
        return probe
    port = PLAIN_PORTS[get["port"]]
    rest = {k: v for k, v in probe.items() if k != "httpGet"}
    if tls.client_auth == "Require":
        return {"tcpSocket": {"port": port}, **rest}
    return {"httpGet": {**get, "port": port, "scheme": "HTTPS"}, **rest}


def secure_service(svc: ParsedService, service: dict[str, Any]) -> dict[str, Any]:
    """``service`` with its ports named ``https``/``grpcs``, targeting the TLS container ports,
    appProtocol https, and the HTTP port moved from 80 to 443."""
    if tls_of(svc) is None:
        return service
    out = copy.deepcopy(service)
    ports = []
    for port in out["spec"]["ports"]:
        name = port.get("name")
        if name in PLAIN_PORTS:
            port = {**port, "name": PLAIN_PORTS[name], "appProtocol": APP_PROTOCOL}
            port["targetPort"] = PLAIN_PORTS.get(port.get("targetPort", ""), port["targetPort"])
            if port.get("port") == HTTP_PORT:
                port["port"] = HTTPS_PORT
        ports.append(port)
    out["spec"]["ports"] = ports
    return out
