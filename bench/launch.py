"""Starts and stops the servers under test, each in its own virtual environment and process
group, pinned to CPU 0 with taskset. Called by ``bench/run.py``.

- ours: ``modelfleet serve`` (bench/.work/venvs/ours, the repository installed editable).
- ours@COMMIT: the same at another commit, for a before/after run (``baseline``): a
  ``git worktree`` of it under bench/.work/worktrees/ in its own venv, venvs/ours-COMMIT.
- kserve: KServe 0.21's ModelServer with bench/servers/kserve_onnx.py.
- mlserver: MLServer 1.7.1 with bench/servers/mlserver_onnx.py, ``parallel_workers: 0``.

Every server gets its fastest documented settings for one core: per-request logs off (KServe
latency logging, MLServer debug/access logs, our INFO logs) and MLServer's metrics endpoint off.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Server:
    """One running server: ``url`` is its V2 infer endpoint; every server that serves gRPC
    here does so on the next port (``grpc``)."""

    label: str
    kind: str
    model: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.port + 1}"

    @property
    def url(self) -> str:
        return f"{self.base}/v2/models/{self.model}/infer"


def _spawn(
    command: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            ["taskset", "-c", "0", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: stop() ends it and its children
        )


def baseline(work: Path, rev: str) -> str:
    """Prepare our runtime at commit ``rev`` (made once, then reused): a detached worktree
    bench/.work/worktrees/COMMIT and the venv bench/.work/venvs/ours-COMMIT holding it
    editable, with the client distribution (client/, from f34477d on) where the commit has one,
    as scripts/setup installs it. Returns the short commit: its servers are ``LABEL@COMMIT``."""
    git = ["git", "-C", str(HERE.parent)]
    found = subprocess.run(
        [*git, "rev-parse", "--short", f"{rev}^{{commit}}"], capture_output=True, text=True
    )
    if found.returncode != 0:
        raise SystemExit(f"--baseline {rev}: not a commit of this repository: {found.stderr}")
    commit = found.stdout.strip()
    tree = work / "worktrees" / commit
    if not tree.exists():
        subprocess.run([*git, "worktree", "prune"], check=True)  # forget deleted bench/.work
        subprocess.run([*git, "worktree", "add", "--detach", str(tree), commit], check=True)
    venv = work / "venvs" / f"ours-{commit}"
    if not (venv / ".installed").exists():
        print(f"creating {venv}", flush=True)  # noqa: T201
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        editable = [
            f"--editable={p}" for p in (tree / "client", tree) if (p / "pyproject.toml").exists()
        ]
        subprocess.run([str(venv / "bin/pip"), "install", "-q", *editable], check=True)
        (venv / ".installed").touch()
    return commit


def start_ours(
    work: Path, label: str, model: str, path: Path, port: int, *flags: str, venv: str = "ours"
) -> Server:
    """``modelfleet serve`` from bench/.work/venvs/VENV: ours, or ours-COMMIT (``baseline``),
    its gRPC server on ``port + 1``."""
    exe = work / "venvs" / venv / "bin/modelfleet"
    model_dir = work / "tmp" / f"ours-{port}"
    shutil.rmtree(model_dir, ignore_errors=True)
    command = [
        str(exe), "serve", "--model-uri", str(path), "--name", model, "--port", str(port),
        "--host", "127.0.0.1", "--intra-op-threads", "1", "--inter-op-threads", "1",
        "--log-level", "WARNING", "--poll-interval", "0", "--model-dir", str(model_dir),
        "--grpc-port", str(port + 1), *flags,  # gRPC on, as by default
    ]  # fmt: skip
    log = work / "logs" / f"{label}-{port}.log"
    return Server(label, "ours", model, port, _spawn(command, log), log)


def start_floor(
    work: Path,
    label: str,
    model: str,
    path: Path,
    port: int,
    script: str = "asgi_floor.py",
    venv: str = "ours",
) -> Server:
    """A reference floor from bench/servers/ in bench/.work/venvs/VENV: the raw-ASGI one,
    ``grpc_floor.py`` (grpc.aio, gRPC on ``port + 1``) or ``grpc_h2_floor.py``."""
    command = [str(work / "venvs" / venv / "bin/python"), str(HERE / "servers" / script),
               str(path), model, str(port)]  # fmt: skip
    log = work / "logs" / f"{label}-{port}.log"
    return Server(label, "floor", model, port, _spawn(command, log), log)


def start_kserve(
    work: Path, label: str, model: str, path: Path, port: int, grpc: bool = False
) -> Server:
    """KServe's ModelServer; ``grpc``: its gRPC server too, on ``port + 1``."""
    command = [
        str(work / "venvs/kserve/bin/python"), str(HERE / "servers/kserve_onnx.py"),
        "--http_port", str(port), "--grpc_port", str(port + 1), "--enable_grpc", str(grpc).lower(),
        "--enable_latency_logging", "false", "--configure_logging", "false",
    ]  # fmt: skip
    env = {"BENCH_MODEL_NAME": model, "BENCH_MODEL_PATH": str(path)}
    log = work / "logs" / f"{label}-{port}.log"
    return Server(label, "kserve", model, port, _spawn(command, log, env=env), log)


def start_mlserver(
    work: Path, label: str, model: str, path: Path, port: int, batch: tuple[int, float] | None
) -> Server:
    folder = work / "mlserver" / f"{label}-{port}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(HERE / "servers/mlserver_onnx.py", folder / "mlserver_onnx.py")
    settings = {
        "debug": False,
        "parallel_workers": 0,
        "http_port": port,
        "grpc_port": port + 1,
        "metrics_port": port + 2,
        "metrics_endpoint": None,
        "host": "127.0.0.1",
    }
    model_settings: dict[str, object] = {
        "name": model,
        "implementation": "mlserver_onnx.OnnxRuntime",
        "parameters": {"uri": str(path)},
    }
    if batch is not None:
        model_settings["max_batch_size"], model_settings["max_batch_time"] = batch
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    command = [str(work / "venvs/mlserver/bin/mlserver"), "start", str(folder)]
    log = work / "logs" / f"{label}-{port}.log"
    return Server(label, "mlserver", model, port, _spawn(command, log, cwd=folder), log)


def wait_ready(server: Server, deadline_s: float = 120.0) -> None:
    """Poll the V2 model-ready endpoint until 200, the process dies, or the deadline."""
    url = f"{server.base}/v2/models/{server.model}/ready"
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.label} exited: {server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"{server.label} not ready after {deadline_s} s: {server.log.read_text()[-3000:]}"
    )


def cpu_seconds(server: Server) -> float:
    """CPU time (user + system, every thread) used so far by the server's process group: the
    noise-robust cost measure on a shared machine (wall-clock rates depend on who else runs)."""
    total = 0
    pgid = server.process.pid  # start_new_session: the group id is the leader's pid
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # fields[0] is the state; pgrp is the 5th field of stat
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(5)
