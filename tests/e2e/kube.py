"""The end-to-end tests' handle on the real control plane: kubectl and helm as a person runs
them, the audit log the API server writes, and waits on conditions.

Every call is the real binary (kubectl v1.37, helm v4) against the real kube-apiserver that
``scripts/cluster up`` started; nothing here emulates anything.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.helpers.waiting import wait_until

T = TypeVar("T")
Manifest = dict[str, Any]
OPERATOR_USER = "system:serviceaccount:modelfleet-system:modelfleet"
"""The identity the operator runs as: the chart's ServiceAccount (release ``modelfleet``)."""
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """``wait_until`` polling every 0.2 s by default: each poll here is a kubectl process."""
    result: T = wait_until(condition, timeout, what, interval=every)
    return result


class CommandFailed(AssertionError):
    def __init__(self, command: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}{result.stdout}"
        )
        self.result = result


@dataclass
class Cluster:
    """A running control plane: its admin kubeconfig, tools and folder (``scripts/cluster``)."""

    home: Path
    kubeconfig: Path
    kubectl_path: Path
    helm_path: Path
    state: Mapping[str, Any] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state['ports']['apiserver']}"

    @property
    def ca_file(self) -> Path:
        return self.home / "pki" / "ca.crt"

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        helm_home = self.home / "helm"
        return {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or self.kubeconfig),
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }

    def run(
        self,
        tool: Path,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        command = [str(tool), *args]
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            env=self.env(kubeconfig),
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise CommandFailed([tool.name, *args], result)
        return result

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(self.kubectl_path, *args, **kwargs)

    def helm(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm_path, *args, **kwargs)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        """One object as JSON, or None when it does not exist."""
        scope = ["-n", namespace] if namespace else []
        result = self.kubectl("get", kind, name, *scope, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise CommandFailed(["kubectl", "get", kind, name], result)
        found: Manifest = json.loads(result.stdout)
        return found

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[Manifest]:
        args = ["get", kind, "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items: list[Manifest] = json.loads(self.kubectl(*args).stdout)["items"]
        return items

    def apply(self, *objects: Manifest, namespace: str | None = None) -> str:
        """``kubectl apply -f -`` of ``objects``; returns kubectl's output."""
        scope = ["-n", namespace] if namespace else []
        text = yaml.safe_dump_all(objects, sort_keys=False)
        return self.kubectl("apply", *scope, "-f", "-", input=text).stdout

    def audit(self) -> AuditLog:
        return AuditLog(self.home / "audit.log")

    @classmethod
    def up(cls, script: Path) -> Cluster:
        """``scripts/cluster up`` (starting one or reusing the running one), then its state."""
        started = subprocess.run([script, "up"], capture_output=True, text=True, timeout=900)
        if started.returncode != 0:
            raise AssertionError(f"{script} up failed:\n{started.stderr[-5000:]}")
        last = started.stdout.strip().splitlines()[-1]
        assert last.startswith("export KUBECONFIG="), started.stdout
        kubeconfig = Path(last.split("=", 1)[1])
        status = subprocess.run([script, "status"], capture_output=True, text=True, check=True)
        state = json.loads(status.stdout)
        tools = state["tools"]
        return cls(
            kubeconfig.parent, kubeconfig, Path(tools["kubectl"]), Path(tools["helm"]), state
        )


@dataclass
class AuditEvent:
    user: str
    verb: str
    code: int
    uri: str
    resource: str
    namespace: str
    name: str
    received: str
    """When the API server received the request (RFC 3339, microseconds)."""
    completed: str
    """When it answered (the ResponseComplete stage)."""
    decision: str
    """The authorizer's word (``allow``/``forbid``): a 403 from admission (a namespace being
    deleted) is allowed by RBAC and refused later."""

    @classmethod
    def parse(cls, line: str) -> AuditEvent:
        raw = json.loads(line)
        ref = raw.get("objectRef") or {}
        return cls(
            user=raw.get("user", {}).get("username", ""),
            verb=raw.get("verb", ""),
            code=int((raw.get("responseStatus") or {}).get("code") or 0),
            uri=raw.get("requestURI", ""),
            resource="/".join(filter(None, [ref.get("resource"), ref.get("subresource")])),
            namespace=ref.get("namespace", ""),
            name=ref.get("name", ""),
            received=raw.get("requestReceivedTimestamp", ""),
            completed=raw.get("stageTimestamp", ""),
            decision=(raw.get("annotations") or {}).get("authorization.k8s.io/decision", ""),
        )


class AuditLog:
    """The API server's audit log (JSON lines, ``--audit-log-path``), read from a mark on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.excused: list[tuple[datetime.datetime, datetime.datetime]] = []

    def excuse(self, start: datetime.datetime, end: datetime.datetime, why: str) -> None:
        """Refusals received from ``start`` to ``end`` (aware datetimes) are not the
        operator's rules at fault (``why`` says what is); refusals outside still fail."""
        assert why and start.tzinfo is not None and end.tzinfo is not None
        self.excused.append((start, end))

    def events(self) -> Iterator[AuditEvent]:
        """Every complete event written since this reader was made (or last marked)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            for line in handle:
                if line.endswith(b"\n"):
                    yield AuditEvent.parse(line.decode())

    def operator_writes(self) -> list[AuditEvent]:
        return [e for e in self.events() if e.user == OPERATOR_USER and e.verb in WRITE_VERBS]

    def operator_refusals(self) -> list[AuditEvent]:
        """The operator's requests the RBAC authorizer refused, outside excused windows."""
        return [
            e
            for e in self.events()
            if e.user == OPERATOR_USER and e.decision == "forbid" and not self._excused(e)
        ]

    def _excused(self, event: AuditEvent) -> bool:
        received = datetime.datetime.fromisoformat(event.received)
        return any(start <= received <= end for start, end in self.excused)
