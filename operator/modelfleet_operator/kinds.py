"""Resource kinds by name: the InferenceService's identity and how a child names its owner.

The one place the CRD's group, version, kind and plural are written: ``crd.py`` builds the CRD
from them, ``handlers.py`` registers kopf's handlers for them, the live half reads and writes
InferenceServices through :data:`INFERENCE_SERVICE`, and the label and annotation keys in
``labels.py`` and ``converge.py`` use :data:`GROUP` as their prefix. :class:`KindRef` is the
one type for "a kind of object": ``render.managed_kinds()`` lists the child kinds with it and
``kube.py`` builds URLs from it. :func:`controller_of` is the one reader of ownerReferences.

Pure: no kopf, no Kubernetes client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

GROUP = "serving.modelfleet.dev"
"""The API group of the InferenceService, and the prefix of our labels and annotations."""
VERSION = "v1alpha1"
"""The served (and stored) version of the InferenceService."""
SINGULAR = "inferenceservice"
SHORT_NAMES = ("isvc",)


@dataclasses.dataclass(frozen=True)
class KindRef:
    """One resource kind: how manifests name it and how its URLs are built."""

    api_version: str
    """``group/version``, or ``v1`` for the core group."""
    kind: str
    plural: str

    @property
    def group(self) -> str:
        """The API group; ``""`` for the core group."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        """The version within the group."""
        return self.api_version.rpartition("/")[2]

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """The URL of the collection in ``namespace`` (all namespaces if None), or of one object."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        scope = f"{prefix}/namespaces/{quote(namespace)}" if namespace else prefix
        path = f"{scope}/{self.plural}"
        return f"{path}/{quote(name)}" if name else path


INFERENCE_SERVICE = KindRef(f"{GROUP}/{VERSION}", "InferenceService", "inferenceservices")
"""The custom resource this operator serves."""
CRD_NAME = f"{INFERENCE_SERVICE.plural}.{GROUP}"


@dataclasses.dataclass(frozen=True)
class Owner:
    """The InferenceService that controls a child, as its ownerReference names it."""

    name: str
    uid: str


def controller_of(child: Mapping[str, Any]) -> Owner | None:
    """The InferenceService controlling ``child`` (its ``controller: true`` ownerReference of
    our kind, as ``kopf.adopt`` writes it), or None: not ours, or adopted by someone else."""
    for ref in child.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == INFERENCE_SERVICE.kind and ref.get("controller"):
            return Owner(name=str(ref.get("name") or ""), uid=str(ref.get("uid") or ""))
    return None
