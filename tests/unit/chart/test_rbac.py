"""The operator's RBAC is exactly the allow-list of RELIABILITY.md "Least-privilege RBAC" (O13):
no wildcards, Secrets by name only (get: the TLS Secret's type and key count, never listed or
watched), no pods/exec, no RBAC or CRD writes; a ClusterRole when cluster-wide,
a Role per watched namespace otherwise; every binding points at what the chart renders.
"""

from __future__ import annotations

from modelfleet_operator import render as operator_render
from tests.unit.chart.helpers import NAMESPACE, Manifest, Rendered, render

WRITE_CHILD = frozenset({"create", "get", "list", "watch", "patch", "delete"})
WORK: dict[tuple[str, str], frozenset[str]] = {
    ("apps", "deployments"): WRITE_CHILD,
    ("", "services"): WRITE_CHILD,
    ("autoscaling", "horizontalpodautoscalers"): WRITE_CHILD,
    ("policy", "poddisruptionbudgets"): WRITE_CHILD,
    ("keda.sh", "scaledobjects"): WRITE_CHILD,
    ("gateway.networking.k8s.io", "httproutes"): WRITE_CHILD,
    ("", "pods"): frozenset({"list", "watch"}),  # read-only: cold-start times, Pending reasons
    ("serving.modelfleet.dev", "inferenceservices"): frozenset({"get", "list", "watch", "patch"}),
    ("serving.modelfleet.dev", "inferenceservices/status"): frozenset({"patch"}),
    ("serving.modelfleet.dev", "inferenceservices/finalizers"): frozenset({"update"}),
    ("", "events"): frozenset({"create"}),
    ("", "secrets"): frozenset({"get"}),
}
DISCOVERY: dict[tuple[str, str], frozenset[str]] = {
    ("", "namespaces"): frozenset({"list", "watch"}),
    ("apiextensions.k8s.io", "customresourcedefinitions"): frozenset({"list", "watch"}),
}
PEERING = frozenset({"get", "list", "watch", "patch"})
FORBIDDEN_RESOURCES = {"pods/exec", "pods/attach", "serviceaccounts/token"}

Grants = dict[tuple[str, str], frozenset[str]]


def grants(role: Manifest) -> Grants:
    """(apiGroup, resource) -> verbs of one Role or ClusterRole; fails on a repeated pair."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for rule in role["rules"]:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in out, f"{group}/{resource} granted twice"
                out[(group, resource)] = frozenset(rule["verbs"])
    return out


def expected(cluster_wide: bool, ha: bool) -> tuple[Grants, Grants]:
    """(the work role's grants, the discovery ClusterRole's grants, if separate)."""
    work = dict(WORK)
    if cluster_wide:
        work |= DISCOVERY
        if ha:
            work[("kopf.dev", "clusterkopfpeerings")] = PEERING
        return work, {}
    if ha:
        work[("kopf.dev", "kopfpeerings")] = PEERING
    return work, dict(DISCOVERY)


def test_no_wildcards_secrets_exec_or_rbac_writes(rendered: Rendered) -> None:
    for role in rendered.of_kind("Role", "ClusterRole"):
        for (group, resource), verbs in grants(role).items():
            assert "*" not in (group, resource) and "*" not in verbs
            assert resource not in FORBIDDEN_RESOURCES
            if resource == "secrets":  # by name only: a list or watch would return values
                assert verbs == {"get"}
            assert group != "rbac.authorization.k8s.io"
            if resource == "customresourcedefinitions":
                assert verbs <= {"list", "watch", "get"}
            assert not verbs & {"escalate", "bind", "impersonate"}


def test_rules_are_exactly_the_allow_list(rendered: Rendered) -> None:
    (workload,) = rendered.of_kind("Deployment", "StatefulSet")
    ha = workload["kind"] == "StatefulSet"
    roles = rendered.of_kind("Role")
    cluster_roles = {r["metadata"]["name"]: r for r in rendered.of_kind("ClusterRole")}
    work, discovery = expected(cluster_wide=not roles, ha=ha)
    if roles:
        for role in roles:
            assert grants(role) == work
        (only,) = cluster_roles.values()
        assert grants(only) == discovery
    else:
        (only,) = cluster_roles.values()
        assert grants(only) == work


def test_bindings_point_at_rendered_roles_and_the_service_account(rendered: Rendered) -> None:
    (account,) = rendered.of_kind("ServiceAccount")
    roles = {
        (r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"])
        for r in rendered.of_kind("Role", "ClusterRole")
    }
    bindings = rendered.of_kind("RoleBinding", "ClusterRoleBinding")
    assert len(bindings) == len(roles)
    for binding in bindings:
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        assert (ref["kind"], namespace, ref["name"]) in roles
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
        ]


def test_every_child_kind_the_operator_renders_is_granted() -> None:
    """Drift guard: a new child kind in the operator's render() needs a rule here too."""
    (role,) = render().of_kind("ClusterRole")
    granted = grants(role)
    for kind in operator_render.managed_kinds():
        assert granted.get((kind.group, kind.plural)) == WRITE_CHILD, kind


def test_rbac_can_be_left_to_the_user() -> None:
    rendered = render({"rbac": {"create": False}})
    assert not rendered.of_kind("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
