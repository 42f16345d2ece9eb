"""Every pod the chart renders meets Pod Security "restricted" plus our own hardening (O12):
a read-only root filesystem with an emptyDir /tmp, a fixed non-root UID, resources, probes.

The checker, ``restricted_violations``, is shared with the operator's tests
(tests/helpers/pod_security.py).
"""

from __future__ import annotations

from tests.helpers.pod_security import restricted_violations
from tests.unit.chart.helpers import Manifest, Rendered, pod_specs, render


def hardening_violations(spec: Manifest) -> list[str]:
    """Our rules beyond PSS: read-only root with an emptyDir /tmp, UID 10001, resources, probes."""
    return restricted_violations(
        spec, read_only_root=True, resources=True, uid=10001, tmp_empty_dir=True, probes=True
    )


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
