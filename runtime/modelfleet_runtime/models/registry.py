"""Which versions of the model serve right now, and why the others don't.

The model repository publishes and retires versions here; the data plane looks them up on
every request. All changes happen on the event loop, and readers never see a half-built
version: a version appears only once it is loaded and warmed, and a retired version's session
lives on until the last request holding it finishes (MLServer's ``_reload_model`` order:
load N+1, switch, then release N).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from modelfleet_runtime.errors import ModelNotFoundError, ModelNotReadyError
from modelfleet_runtime.models.onnx import OnnxModel


class VersionState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "UNAVAILABLE"  # Triton's word for a version that could not be loaded


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: VersionState
    reason: str = ""
    message: str = ""

    def wire(self) -> dict[str, str]:
        out = {"version": str(self.version), "state": self.state.value}
        if self.reason:
            out |= {"reason": self.reason, "message": self.message}
        return out


class ModelRegistry:
    """The loaded versions of one model, by number, plus the status of the others."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._models: dict[int, OnnxModel] = {}
        self._default: OnnxModel | None = None
        self._status: dict[int, VersionStatus] = {}
        self.on_retire: list[Callable[[OnnxModel], None]] = []
        """Called with each version that stops serving (the data plane closes its batcher)."""
        self.became_ready = asyncio.Event()
        """Set once ``ready`` first holds."""
        self.settled = False
        """Whether the first pass over storage has tried every version the policy wants."""
        self.problem: str | None = "loading"
        """Why nothing serves yet (storage unreachable, every version failed), for 503s."""

    @property
    def ready(self) -> bool:
        """Ready: the first pass over storage has tried every wanted version and at least one
        serves. (Until then the newest loaded version already answers requests that name no
        version; readiness waits so that a policy of several versions starts with all.)"""
        return self._default is not None and self.settled

    def settle(self) -> None:
        """The repository's first complete pass is over (see ``ready``)."""
        self.settled = True
        if self._default is not None:
            self.became_ready.set()

    @property
    def versions(self) -> dict[int, OnnxModel]:
        return dict(self._models)

    def get(self, name: str, version: int | None = None) -> OnnxModel:
        """The requested version, or the newest loaded one; 404 or 503 otherwise."""
        if name != self.name:
            raise ModelNotFoundError(name)
        if version is None:
            if self._default is None:
                raise ModelNotReadyError(f"model '{name}' is not ready: {self.problem}")
            return self._default
        model = self._models.get(version)
        if model is not None:
            return model
        status = self._status.get(version)
        if status is None:
            raise ModelNotFoundError(name, version)
        detail = f"{status.reason}: {status.message}" if status.reason else status.state.value
        raise ModelNotReadyError(f"version {version} of model '{name}' is not ready: {detail}")

    def publish(self, model: OnnxModel) -> None:
        """Start serving a loaded version (replacing the same number, if it was loaded)."""
        models = dict(self._models)
        replaced = models.get(model.version)
        models[model.version] = model
        self._swap(models)
        if replaced is not None:
            self._retired(replaced)
        self._status[model.version] = VersionStatus(model.version, VersionState.READY)
        self.problem = None
        if self.settled:
            self.became_ready.set()

    def retire(self, version: int) -> None:
        """Stop routing to a version; in-flight requests keep their reference and finish."""
        models = dict(self._models)
        retired = models.pop(version, None)
        self._swap(models)
        self._status.pop(version, None)
        if retired is not None:
            self._retired(retired)

    def _retired(self, model: OnnxModel) -> None:
        for callback in self.on_retire:
            callback(model)

    def mark_loading(self, version: int) -> None:
        if version not in self._models:
            self._status[version] = VersionStatus(version, VersionState.LOADING)

    def mark_failed(self, version: int, reason: str, message: str) -> None:
        """Record a failed load. A version that was serving keeps serving (state READY) and
        says why its new files were refused (a tag moved to a broken image, an object
        replaced in place)."""
        if version in self._models:
            kept = f"serving the files loaded earlier; their replacement was refused: {message}"
            self._status[version] = VersionStatus(version, VersionState.READY, reason, kept)
            return
        self._status[version] = VersionStatus(version, VersionState.FAILED, reason, message)
        if self._default is None:
            self.problem = f"{reason}: {message}"

    def statuses(self) -> list[VersionStatus]:
        return [self._status[v] for v in sorted(self._status)]

    def _swap(self, models: dict[int, OnnxModel]) -> None:
        # Readers see either the old or the new mapping, never one being edited.
        self._models = models
        self._default = models[max(models)] if models else None
