"""Operator processes: one active writer under peering (O11), SIGKILL mid-reconcile (O2).

Each operator is a real ``modelfleet operator`` process (as in ``bench/operator_scale.py``)
against the emulator served from the test's loop. Every process logs in with its own
kubeconfig whose bearer token names it, so the emulator's request log tells which process sent
each write (``Authorization`` header); its kopf peering identity is its ``POD_ID``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from modelfleet_operator import main as operator_main
from modelfleet_operator import peering as operator_peering
from tests.integration.operator.conftest import DEPLOYMENTS, HPAS, SERVICES, Cluster, isvc
from tests.integration.operator.emulator import ISVC_RESOURCE, ClusterEmulator, Fault

PEERING = "modelfleet"
PEERINGS = "kopf.dev/v1/clusterkopfpeerings"
LIFETIME = 5  # --peering-lifetime: kopf touches its peering entry every 1 s at this setting
RESYNC = 2.0  # short, so that a paused replica's resync loop would show within the test
CODE = "import sys; from modelfleet_operator.main import main; sys.exit(main(sys.argv[1:]))"


class OperatorProcess:
    """One ``modelfleet operator`` process; its output goes to a file, read for kopf's log."""

    def __init__(self, name: str, workdir: Path, args: list[str]) -> None:
        self.name = name
        self.token = f"token-{name}"
        self.args = args
        self.log_path = workdir / f"{name}.log"
        self.kubeconfig = workdir / f"{name}.kubeconfig"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        config = json.loads(Path(os.environ["KUBECONFIG"]).read_text())
        config["users"][0]["user"]["token"] = self.token
        self.kubeconfig.write_text(json.dumps(config))
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "POD_ID": self.name,  # kopf's peering identity
            "MODELFLEET_OPERATOR_LOG_FORMAT": "text",
            "MODELFLEET_OPERATOR_LOG_LEVEL": "INFO",
        }
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CODE, *self.args, env=env, stdout=log, stderr=log
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no peering farewell."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()


Launcher = Callable[..., Any]


@pytest_asyncio.fixture()
async def launch(emulator: ClusterEmulator, tmp_path: Path) -> AsyncIterator[Launcher]:
    """Start operator processes (stopped at teardown); the emulator outlives them all."""
    assert emulator.active  # and so does $KUBECONFIG, which each process's kubeconfig copies
    started: list[OperatorProcess] = []

    async def start(name: str, *args: str) -> OperatorProcess:
        op = OperatorProcess(name, tmp_path, ["--all-namespaces", *args])
        started.append(op)
        await op.start()
        return op

    yield start
    for op in started:
        await op.stop()


def writes_by(cluster: Cluster, op: OperatorProcess, name: str | None = None) -> list[str]:
    """Writes ``op`` sent, peering keep-alives aside (optionally only those about ``name``)."""
    found = []
    for r in cluster.emulator.writes():
        if r.headers.get("Authorization") != f"Bearer {op.token}":
            continue
        if r.resource is not None and r.resource.group == "kopf.dev":
            continue
        if name is not None and not (r.name or "").startswith(name):
            continue
        found.append(f"{r.method.value} {r.url.path_qs}")
    return found


def peers(cluster: Cluster) -> set[str]:
    obj = cluster.get(PEERINGS, PEERING, namespace=None) or {}  # type: ignore[arg-type]
    return set(obj.get("status") or {})


def converged(cluster: Cluster, name: str) -> bool:
    dep = f"{name}-predictor"
    children = cluster.get(DEPLOYMENTS, dep) and cluster.get(SERVICES, name)
    status = (cluster.get(ISVC_RESOURCE, name) or {}).get("status") or {}
    return bool(children and cluster.get(HPAS, dep) and status.get("observedGeneration") == 1)


def ready(cluster: Cluster, name: str) -> bool:
    status = (cluster.get(ISVC_RESOURCE, name) or {}).get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    return bool(conditions.get("Ready", {}).get("status") == "True")


async def start_pair(
    cluster: Cluster, launch: Launcher, resync: float
) -> tuple[OperatorProcess, OperatorProcess]:
    """A peering object, a leader (priority 20), then a follower (10) once the leader is seen."""
    await cluster.request(
        "POST",
        "/apis/kopf.dev/v1/clusterkopfpeerings",
        json={
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": PEERING},
        },
    )
    peering = ["--peering", PEERING, "--peering-lifetime", str(LIFETIME), "--resync", str(resync)]
    leader: OperatorProcess = await launch("op-high", *peering, "--priority", "20")
    await cluster.eventually(lambda: "op-high" in peers(cluster), timeout=15, what="leader peer")
    follower: OperatorProcess = await launch("op-low", *peering, "--priority", "10")
    # kopf starts every replica paused until its first peering event; a follower that sees a
    # live higher priority stays paused and so never logs "Resuming".
    await cluster.eventually(lambda: "op-low" in peers(cluster), timeout=15, what="follower peer")
    assert "Resuming operations" in leader.log(), leader.log()
    return leader, follower


async def test_one_active_writer_and_takeover_after_sigkill(
    cluster: Cluster, launch: Launcher
) -> None:
    leader, follower = await start_pair(cluster, launch, resync=600)  # kopf's handlers only
    await cluster.create(isvc("first"))
    await cluster.eventually(lambda: converged(cluster, "first"), timeout=15, what="first")
    await cluster.make_ready("first-predictor")
    await cluster.eventually(lambda: ready(cluster, "first"), timeout=10, what="first Ready")
    assert writes_by(cluster, leader, "first")
    assert writes_by(cluster, follower) == [], follower.log()
    assert "Resuming operations" not in follower.log(), follower.log()

    killed = time.monotonic()
    await leader.kill()
    await cluster.create(isvc("second"))
    await cluster.eventually(  # the deadline is the bound: take over about a lifetime after
        lambda: converged(cluster, "second"),
        timeout=LIFETIME + 10,
        what=f"the follower took over\n{follower.log()}",
    )
    takeover = time.monotonic() - killed
    assert "Resuming operations after the pause" in follower.log()
    assert writes_by(cluster, follower, "second")
    assert cluster.names(DEPLOYMENTS) == ["first-predictor", "second-predictor"]
    sys.stderr.write(f"O11 takeover after SIGKILL: {takeover:.1f} s (lifetime {LIFETIME} s)\n")


async def test_paused_follower_resync_stays_silent(cluster: Cluster, launch: Launcher) -> None:
    leader, follower = await start_pair(cluster, launch, resync=RESYNC)
    await cluster.create(isvc("first"))
    await cluster.eventually(lambda: converged(cluster, "first"), timeout=15, what="first")
    # Quiet window: the follower's resync period passes more than twice; it must stay silent.
    await asyncio.sleep(2.5 * RESYNC)
    assert "Resuming operations" not in follower.log(), follower.log()
    assert writes_by(cluster, follower) == [], follower.log()


@pytest.mark.parametrize("hosts", [("modelfleet-operator-0", "modelfleet-operator-1")])
def test_replicas_without_priority_get_distinct_ones(
    hosts: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Equal priorities freeze every replica (kopf): the derived ones must differ per pod."""
    derived = []
    for host in hosts:
        monkeypatch.setattr(socket, "gethostname", lambda host=host: host)
        derived.append(operator_peering.default_priority())
    assert derived[0] != derived[1]
    assert all(p > 0 for p in derived)
    settings = operator_main.parse_settings(["--peering", "x"])
    assert settings.priority is None
    assert operator_peering.peering_of(settings) == operator_peering.Peering(
        "x", derived[-1]
    )  # derived, not 0


async def test_sigkill_mid_reconcile_then_restart_converges(
    cluster: Cluster, launch: Launcher
) -> None:
    hold = Fault("PATCH", "services", count=1, delay=20)  # the Service apply does not return
    cluster.emulator.faults.append(hold)
    first: OperatorProcess = await launch("op-a")
    await cluster.create(isvc("iris"))
    await cluster.eventually(
        lambda: cluster.get(DEPLOYMENTS, "iris-predictor") and hold.hits,
        timeout=15,
        what="Deployment applied, Service in flight",
    )
    dep_uid = (cluster.get(DEPLOYMENTS, "iris-predictor") or {})["metadata"]["uid"]
    await first.kill()
    assert cluster.get(SERVICES, "iris") is None

    restarted = time.monotonic()
    second: OperatorProcess = await launch("op-b")
    await cluster.eventually(lambda: converged(cluster, "iris"), timeout=15, what="converged")
    await cluster.make_ready("iris-predictor")
    await cluster.eventually(lambda: ready(cluster, "iris"), timeout=10, what="Ready")
    elapsed = time.monotonic() - restarted

    assert cluster.names(DEPLOYMENTS) == ["iris-predictor"]
    assert cluster.names(SERVICES) == ["iris"]
    assert cluster.names(HPAS) == ["iris-predictor"]
    uid = (cluster.get(ISVC_RESOURCE, "iris") or {})["metadata"]["uid"]
    for resource, name in (
        (DEPLOYMENTS, "iris-predictor"),
        (SERVICES, "iris"),
        (HPAS, "iris-predictor"),
    ):
        refs = (cluster.get(resource, name) or {})["metadata"].get("ownerReferences") or []
        assert [r["uid"] for r in refs] == [uid], (resource, refs)
    # The Deployment the killed process created was kept, not replaced.
    assert (cluster.get(DEPLOYMENTS, "iris-predictor") or {})["metadata"]["uid"] == dep_uid
    assert writes_by(cluster, second, "iris")
    sys.stderr.write(f"O2 restart to Ready: {elapsed:.1f} s\n")
