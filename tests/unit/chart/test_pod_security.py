"""Every pod the chart renders meets Pod Security "restricted" plus our own hardening (O12):
a read-only root filesystem with an emptyDir /tmp, a fixed non-root UID, resources, probes.

``restricted_violations`` walks a pod spec with the rules of the Pod Security Standards
(kubernetes.io/docs/concepts/security/pod-security-standards, baseline + restricted).
"""

from __future__ import annotations

from typing import Any

from tests.unit.chart.helpers import Manifest, Rendered, pod_specs, render

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip


def _containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _effective(spec: Manifest, container: Manifest, key: str) -> Any:
    """A securityContext field as the kubelet sees it: the container's, else the pod's."""
    value = container.get("securityContext", {}).get(key)
    return spec.get("securityContext", {}).get(key) if value is None else value


def _pod_level(spec: Manifest) -> list[str]:
    found = [f"host namespace {k}" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            found.append(f"volume {volume['name']} of type {sorted(kinds)}")
    return found


def _container_level(spec: Manifest, c: Manifest) -> list[str]:
    name, sc = c["name"], c.get("securityContext", {})
    found: list[str] = []
    if sc.get("privileged"):
        found.append(f"{name}: privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append(f"{name}: allowPrivilegeEscalation is not false")
    if _effective(spec, c, "runAsNonRoot") is not True:
        found.append(f"{name}: runAsNonRoot is not true")
    if _effective(spec, c, "runAsUser") == 0:
        found.append(f"{name}: runAsUser 0")
    seccomp = _effective(spec, c, "seccompProfile") or {}
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        found.append(f"{name}: seccompProfile {seccomp.get('type')}")
    caps = sc.get("capabilities", {})
    if "ALL" not in caps.get("drop", []):
        found.append(f"{name}: capabilities.drop lacks ALL")
    if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
        found.append(f"{name}: adds capabilities {caps['add']}")
    if any(p.get("hostPort") for p in c.get("ports", [])):
        found.append(f"{name}: hostPort")
    if sc.get("procMount", "Default") != "Default":
        found.append(f"{name}: procMount")
    return found


def restricted_violations(spec: Manifest) -> list[str]:
    """What in one pod spec breaks Pod Security "restricted" (an empty list: nothing)."""
    found = _pod_level(spec)
    for container in _containers(spec):
        found += _container_level(spec, container)
    return found


def hardening_violations(spec: Manifest) -> list[str]:
    """Our rules beyond PSS: read-only root with an emptyDir /tmp, UID 10001, resources, probes."""
    found: list[str] = []
    empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    for c in _containers(spec):
        name = c["name"]
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: root filesystem not read-only")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        if mounts.get("/tmp") not in empty_dirs:
            found.append(f"{name}: /tmp is not an emptyDir")
        if _effective(spec, c, "runAsUser") != 10001:
            found.append(f"{name}: runAsUser is not 10001")
        resources = c.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(part, {})):
                found.append(f"{name}: {part} lack cpu or memory")
        if not (c.get("livenessProbe") and c.get("readinessProbe")):
            found.append(f"{name}: liveness or readiness probe missing")
    return found


def _pods(rendered: Rendered) -> list[Manifest]:
    return [spec for obj in rendered.objects for spec in pod_specs(obj)]


def test_every_rendered_pod_is_restricted(rendered: Rendered) -> None:
    pods = _pods(rendered)
    assert pods
    for spec in pods:
        assert restricted_violations(spec) == []


def test_every_rendered_pod_is_hardened(rendered: Rendered) -> None:
    for spec in _pods(rendered):
        assert hardening_violations(spec) == []
        assert spec["automountServiceAccountToken"] is True  # the operator needs its token


def test_the_walker_catches_an_unsafe_override() -> None:
    """The checker itself: values that loosen the defaults are reported, one rule each."""
    loosened = dict.fromkeys(
        ["allowPrivilegeEscalation", "runAsNonRoot", "capabilities", "seccompProfile"]
    )  # None: Helm deletes the default
    rendered = render(
        {
            "securityContext": {
                **loosened,
                "privileged": True,
                "runAsUser": 0,
                "readOnlyRootFilesystem": None,
            },
            "podSecurityContext": {"runAsNonRoot": None, "seccompProfile": None},
        }
    )
    (spec,) = _pods(rendered)
    found = restricted_violations(spec)
    assert "operator: privileged" in found
    assert "operator: allowPrivilegeEscalation is not false" in found
    assert "operator: runAsNonRoot is not true" in found
    assert "operator: runAsUser 0" in found
    assert "operator: capabilities.drop lacks ALL" in found
    assert "operator: seccompProfile None" in found
    assert "operator: root filesystem not read-only" in hardening_violations(spec)
