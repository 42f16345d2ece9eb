"""How the API client maps error answers of the real API server to kopf's errors."""

from __future__ import annotations

import json

import kopf

from modelfleet_operator.kube import Forbidden, Invalid, NamespaceTerminating, map_error

TERMINATING = {
    "kind": "Status",
    "status": "Failure",
    "message": 'services "iris" is forbidden: unable to create new content in namespace ml '
    "because it is being terminated",
    "reason": "Forbidden",
    "details": {
        "name": "iris",
        "kind": "services",
        "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}],
    },
    "code": 403,
}


def test_namespace_being_deleted_is_its_own_error() -> None:
    error = map_error(403, {}, json.dumps(TERMINATING))
    assert isinstance(error, NamespaceTerminating)


def test_other_403s_are_forbidden_permanent_errors() -> None:
    rbac = {**TERMINATING, "details": {"name": "iris", "kind": "services"}}
    for text in (json.dumps(rbac), "not json", "[]"):
        error = map_error(403, {}, text)
        assert isinstance(error, Forbidden) and isinstance(error, kopf.PermanentError)
        assert not isinstance(error, NamespaceTerminating)
    assert not isinstance(map_error(404, {}, ""), Forbidden)


def test_invalid_is_a_permanent_error_of_its_own() -> None:
    error = map_error(422, {}, '{"reason": "Invalid"}')
    assert isinstance(error, Invalid) and isinstance(error, kopf.PermanentError)
    assert isinstance(map_error(409, {}, ""), kopf.TemporaryError)
