"""One Pod Security checker for every test that renders pods: the chart's unit tests and the
operator's (RELIABILITY.md O12).

``restricted_violations`` walks a pod spec with the rules of the Pod Security Standards
(kubernetes.io/docs/concepts/security/pod-security-standards, baseline + restricted), plus two
stricter rules: a pod-level seccompProfile and an explicit runAsUser. Our own hardening (a
read-only root, resources, a fixed UID, an emptyDir /tmp, probes) is opt-in, one keyword each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Pod = Mapping[str, Any]

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",  # in restricted's list (pod-security-admission v0.37 restrictedVolumes)
    "persistentVolumeClaim",
    "projected",
    "secret",
}
ALLOWED_SECCOMP = ("RuntimeDefault", "Localhost")


def _containers(pod: Pod) -> list[Pod]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def _effective(pod: Pod, container: Pod, key: str) -> Any:
    """A securityContext field as the kubelet sees it: the container's, else the pod's."""
    value = (container.get("securityContext") or {}).get(key)
    return (pod.get("securityContext") or {}).get(key) if value is None else value


def _pod_level(pod: Pod) -> list[str]:
    psc = pod.get("securityContext") or {}
    found = [f"host namespace {k}" for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)]
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            found.append(f"volume {volume['name']} of type {sorted(kinds)}")
    seccomp = (psc.get("seccompProfile") or {}).get("type")
    if seccomp not in ALLOWED_SECCOMP:  # stricter than PSS: set at pod level, not per container
        found.append(f"pod seccompProfile {seccomp}")
    if psc.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    return found


def _identity(pod: Pod, c: Pod) -> list[str]:
    sc = c.get("securityContext") or {}
    psc = pod.get("securityContext") or {}
    found: list[str] = []
    if _effective(pod, c, "runAsNonRoot") is not True:
        found.append("runAsNonRoot is not true")
    if _effective(pod, c, "runAsUser") == 0:
        found.append("runAsUser 0")
    # Stricter than PSS: an explicit UID. A container's explicit null counts as unset.
    if sc.get("runAsUser", psc.get("runAsUser")) is None:
        found.append("runAsUser unset")
    seccomp = _effective(pod, c, "seccompProfile") or {}
    if seccomp.get("type") not in ALLOWED_SECCOMP:
        found.append(f"seccompProfile {seccomp.get('type')}")
    return found


def _container_level(pod: Pod, c: Pod) -> list[str]:
    sc = c.get("securityContext") or {}
    found: list[str] = []
    if sc.get("privileged"):
        found.append("privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation is not false")
    found += _identity(pod, c)
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        found.append("capabilities.drop lacks ALL")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        found.append(f"capabilities added: {caps['add']}")
    if any(p.get("hostPort") for p in c.get("ports") or []):
        found.append("hostPort")
    if sc.get("procMount", "Default") != "Default":
        found.append("procMount")
    return found


def _hardening(
    pod: Pod, c: Pod, *, read_only_root: bool, resources: bool, uid: int | None, probes: bool
) -> list[str]:
    found: list[str] = []
    if (
        read_only_root
        and (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True
    ):
        found.append("root filesystem not read-only")
    if uid is not None and _effective(pod, c, "runAsUser") != uid:
        found.append(f"runAsUser is not {uid}")
    limits = c.get("resources") or {}
    for part in ("requests", "limits") if resources else ():
        if not {"cpu", "memory"} <= set(limits.get(part) or {}):
            found.append(f"resources.{part} lack cpu or memory")
    if probes and not (c.get("livenessProbe") and c.get("readinessProbe")):
        found.append("liveness or readiness probe missing")
    return found


def restricted_violations(
    pod: Pod,
    *,
    read_only_root: bool = False,
    resources: bool = False,
    uid: int | None = None,
    tmp_empty_dir: bool = False,
    probes: bool = False,
) -> list[str]:
    """What in one pod spec breaks Pod Security "restricted" (an empty list: nothing).

    Container findings read ``"<container>: <rule>"``. The keywords add our own hardening:
    ``read_only_root`` (readOnlyRootFilesystem true), ``resources`` (cpu and memory requests
    and limits), ``uid`` (that effective runAsUser), ``tmp_empty_dir`` (/tmp mounted from an
    emptyDir), ``probes`` (liveness and readiness).
    """
    found = _pod_level(pod)
    empty_dirs = {v["name"] for v in pod.get("volumes") or [] if "emptyDir" in v}
    for c in _containers(pod):
        rules = _container_level(pod, c)
        rules += _hardening(
            pod, c, read_only_root=read_only_root, resources=resources, uid=uid, probes=probes
        )
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
        if tmp_empty_dir and mounts.get("/tmp") not in empty_dirs:
            rules.append("/tmp is not an emptyDir")
        found += [f"{c['name']}: {rule}" for rule in rules]
    return found
