"""kopf names a handler's progress annotation after the handler's id when the handler fails
and is retried. The real API server refuses annotation names that do not start and end with an
alphanumeric character: with kopf's default ids (the qualname of a nested function,
``_register_resource.<locals>.reconcile_isvc``) every retry failed with 422 and kopf throttled
the resource (seen with 200 InferenceServices on kube-apiserver; kmock accepts any name)."""

from __future__ import annotations

import re

import kopf

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.handlers import register

QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
"""The name part of an annotation key (k8s.io/apimachinery IsQualifiedName)."""


def test_progress_annotations_of_every_handler_are_valid_names() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, OperatorConfig())
    handlers = list(registry._changing.get_all_handlers())
    assert handlers, "no resource handlers registered"
    storage = kopf.AnnotationsProgressStorage()
    for handler in handlers:
        for key in storage.make_keys(handler.id):
            prefix, name = key.split("/")
            assert prefix == "kopf.zalando.org"
            assert QUALIFIED_NAME.match(name), (handler.id, key)
