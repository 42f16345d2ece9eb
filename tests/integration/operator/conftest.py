"""Fixtures: a fixed kmock emulator on loopback and the real operator (kopf) running against it.

The emulator serves from the test's event loop. kopf runs in its own thread with its own loop
and a fresh ``OperatorRegistry`` (``kopf.operator()`` cancels every task created after it
starts, so it must not share the test's loop); the two talk only over HTTP, like a real
operator and API server. Tests wait on conditions with deadlines (``eventually``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import pytest_asyncio

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.handlers import register
from tests.integration.operator.emulator import (
    ISVC_RESOURCE,
    ClusterEmulator,
    declare_resources,
    kubeconfig,
)

NS = "ml"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
HPAS = "autoscaling/v2/horizontalpodautoscalers"
SCALEDOBJECTS = "keda.sh/v1alpha1/scaledobjects"
PDBS = "policy/v1/poddisruptionbudgets"


def isvc(name: str, **predictor: Any) -> dict[str, Any]:
    """An InferenceService body (KServe-shaped), predictor fields overridable."""
    spec: dict[str, Any] = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "model": {"modelFormat": {"name": "onnx"}, "storageUri": f"s3://models/{name}"},
    }
    spec.update(predictor)
    return {
        "apiVersion": "serving.modelfleet.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"predictor": spec},
    }


class Cluster:
    """Test-side helpers over the emulator: objects, writes, waiting with deadlines."""

    def __init__(self, emulator: ClusterEmulator) -> None:
        self.emulator = emulator

    def get(self, resource: str, name: str, namespace: str = NS) -> dict[str, Any] | None:
        key = (kmock.resource(resource), namespace, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return copy.deepcopy(dict(self.emulator.objects[key].raw))

    def names(self, resource: str, namespace: str = NS) -> list[str]:
        """Names of the live objects of ``resource`` in ``namespace``."""
        found = []
        for (res, ns, name), obj in self.emulator.objects.items():
            if res == kmock.resource(resource) and ns == namespace and not obj.deleted:
                found.append(name)
        return sorted(found)

    def log(self, last: int = 40) -> str:
        """The last requests the emulator saw, one a line (for failure messages)."""
        lines = [f"{r.method.value} {r.url.path_qs}" for r in list(self.emulator)[-last:]]
        return "\n".join(lines)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.emulator.request(method, path, **kwargs) as response:
            assert response.status < 400, await response.text()
            return await response.json()

    async def create(self, body: dict[str, Any]) -> Any:
        return await self.request("POST", f"/apis/{ISVC_RESOURCE}", json=body)

    async def patch(self, resource: str, name: str, patch: dict[str, Any], sub: str = "") -> Any:
        path = f"{_base(resource)}/namespaces/{NS}/{_plural(resource)}/{name}{sub}"
        headers = {"Content-Type": "application/merge-patch+json"}
        return await self.request("PATCH", path, json=patch, headers=headers)

    async def delete(self, resource: str, name: str) -> Any:
        return await self.request(
            "DELETE", f"{_base(resource)}/namespaces/{NS}/{_plural(resource)}/{name}"
        )

    async def eventually(
        self, check: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
    ) -> Any:
        """Poll ``check`` until it returns a truthy value; fail after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = check()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}\n{self.log()}"
                )
            await asyncio.sleep(0.05)  # yield to the emulator: it serves from this loop

    async def handled(self, name: str) -> dict[str, Any]:
        """Wait until kopf has handled the resource's current spec."""

        def done() -> dict[str, Any] | None:
            obj = self.get(ISVC_RESOURCE, name)
            notes = (obj or {}).get("metadata", {}).get("annotations") or {}
            return obj if "kopf.zalando.org/last-handled-configuration" in notes else None

        result: dict[str, Any] = await self.eventually(done, what=f"{name} handled")
        return result

    async def make_ready(self, name: str) -> None:
        """Play the Deployment controller: mark the Deployment's replicas ready."""
        dep = self.get(DEPLOYMENTS, name)
        assert dep is not None
        want = dep["spec"].get("replicas", 1)
        status = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": want,
            "updatedReplicas": want,
            "readyReplicas": want,
            "availableReplicas": want,
            "conditions": [{"type": "Available", "status": "True"}],
        }
        await self.patch(DEPLOYMENTS, name, {"status": status}, sub="/status")


def _base(resource: str) -> str:
    group_version = resource.rsplit("/", 1)[0]
    return "/api/v1" if group_version == "v1" else f"/apis/{group_version}"


def _plural(resource: str) -> str:
    return resource.rsplit("/", 1)[1]


class OperatorThread:
    """The real operator (our handlers in kopf) running in a thread with its own loop."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.thread = threading.Thread(target=self._main, name="kopf", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        registry = kopf.OperatorRegistry()
        register(registry, self.config)
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    standalone=True,
                    clusterwide=True,
                    memo=kopf.Memo(),
                    stop_flag=self.stop_flag,
                    ready_flag=self.ready_flag,
                )
            )
        except BaseException as exc:  # reported by the fixture, never swallowed
            self.error = exc

    async def start(self) -> None:
        self.thread.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.ready_flag.wait, 10)

    async def stop(self) -> None:
        self.stop_flag.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.thread.join, 15)
        assert not self.thread.is_alive(), "the operator did not stop"


@contextlib.asynccontextmanager
async def emulated(workdir: Path, *, gateway_api: bool = False) -> AsyncIterator[ClusterEmulator]:
    """An emulator on loopback, with $KUBECONFIG pointing at it until the block ends."""
    async with ClusterEmulator() as handler, kmock.Server(handler) as server:
        declare_resources(handler, gateway_api=gateway_api)
        config = workdir / "kubeconfig"
        config.write_text(kubeconfig(str(server.url).rstrip("/")))
        before = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(config)
        try:
            yield handler
        finally:
            if before is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = before


@pytest_asyncio.fixture()
async def emulator(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[ClusterEmulator]:
    """The emulator; ``@pytest.mark.gateway_api`` makes it serve HTTPRoutes too."""
    gateway_api = request.node.get_closest_marker("gateway_api") is not None
    async with emulated(tmp_path, gateway_api=gateway_api) as handler:
        yield handler


@pytest.fixture()
def cluster(emulator: ClusterEmulator) -> Cluster:
    return Cluster(emulator)


OperatorFactory = Callable[..., Awaitable[OperatorThread]]


@pytest_asyncio.fixture()
async def start_operator(emulator: ClusterEmulator) -> AsyncIterator[OperatorFactory]:
    """Start (and at teardown stop) operator instances against the emulator."""
    assert emulator.active  # the emulator (and $KUBECONFIG) must outlive every operator
    started: list[OperatorThread] = []

    async def start(
        resync_seconds: float = 30.0, endpoint: str | None = None, request_timeout: float = 10.0
    ) -> OperatorThread:
        config = OperatorConfig(
            resync_seconds=resync_seconds, liveness=endpoint, request_timeout=request_timeout
        )
        op = OperatorThread(config)
        started.append(op)
        await op.start()
        return op

    yield start
    for op in started:
        if op.thread.is_alive():
            await op.stop()
    errors = [op.error for op in started if op.error is not None]
    assert not errors, errors


@pytest_asyncio.fixture()
async def operator(start_operator: OperatorFactory) -> OperatorThread:
    return await start_operator()
