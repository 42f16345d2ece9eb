"""What traces cost a request: MLP-small over HTTP, our runtime before and after a change, and
the after side with a traceparent, with its INFO log line, and with ``--tracing`` on.

    .venv/bin/python bench/trace_cost.py --baseline REV [--reps 6 --duration 5 --connections 16]

Every server is ``modelfleet serve`` from this checkout's .venv, pinned to CPU 0; the one
labelled ``before`` runs the runtime and client sources of commit REV (``git archive`` into
bench/.work/trace-base/COMMIT, put first on PYTHONPATH), so only the code differs. wrk runs on
CPU 1 (``load.run_wrk``); trials are interleaved across servers, ``--reps`` rounds, so that a
noisy machine hits every server alike. Per server: median req/s, p99 and CPU per request (the
server's process group, ``launch.cpu_seconds``), each as a ratio to ``before``. The spans of
the ``--tracing`` server go to an OTLP receiver (tests/helpers/otlp.py) in its own process
on CPU 1, as a collector beside the pod would take them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import launch
import models
from load import Body, require_wrk, run_wrk

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"
PYTHON = REPO / ".venv" / "bin" / "python"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
RECEIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.helpers.otlp import otlp_receiver
with otlp_receiver() as receiver:
    print(receiver.endpoint, flush=True)
    while True:
        time.sleep(60)
"""


@dataclass
class Variant:
    label: str
    flags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    traceparent: str | None = None
    base: bool = False  # the baseline commit's sources


def baseline_sources(rev: str) -> tuple[str, Path]:
    """``runtime/`` and ``client/`` of ``rev``, unpacked once under bench/.work/trace-base."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    root = WORK / "trace-base" / commit
    if not (root / "runtime").exists():
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "runtime", "client"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(root, filter="data")
    return commit, root


def start(variant: Variant, index: int, model: Path, base: Path) -> launch.Server:
    """One server on port 18600 + ``index``; per-request logs off (WARNING) as in run.py,
    unless the variant's flags set another level (the last flag wins)."""
    port = 18600 + index
    env = dict(variant.env)
    if variant.base:
        env["PYTHONPATH"] = pythonpath(base)
    command = [
        str(PYTHON), "-m", "modelfleet_runtime.cli", "serve", "--model-uri", str(model),
        "--name", "m", "--port", str(port), "--intra-op-threads", "1",
        "--inter-op-threads", "1", "--poll-interval", "0", "--grpc-port", "0",
        "--model-dir", str(WORK / "tmp" / f"trace-{port}"), "--log-format", "json",
        "--log-level", "WARNING", *variant.flags,
    ]  # fmt: skip
    log = WORK / "logs" / f"trace-{index}.log"
    process = launch._spawn(command, log, env=env)
    server = launch.Server(variant.label, "ours", "m", port, process, log)
    launch.wait_ready(server)
    return server


def pythonpath(base: Path) -> str:
    """PYTHONPATH that makes .venv's python import the baseline's sources (checked once)."""
    path = f"{base / 'runtime'}:{base / 'client'}"
    probe = "import modelfleet_runtime, modelfleet_client; print(modelfleet_runtime.__file__)"
    found = subprocess.run(
        [str(PYTHON), "-c", probe], env={**os.environ, "PYTHONPATH": path},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert found.startswith(str(base)), f"the baseline imports {found}"
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, metavar="REV")
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    require_wrk()
    commit, base = baseline_sources(args.baseline)
    model = models.build(WORK)["mlp_small"]
    body_path = WORK / "bodies" / "trace_mlp_small.json"
    body_path.parent.mkdir(parents=True, exist_ok=True)
    body_path.write_bytes(models.json_body(models.request_input(model)))
    receiver = subprocess.Popen(
        ["taskset", "-c", "1", str(PYTHON), "-c", RECEIVER, str(REPO)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert receiver.stdout is not None
    endpoint = receiver.stdout.readline().strip()
    tracing = {"MODELFLEET_TRACING": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    variants = [
        Variant(f"before ({commit})", base=True),
        Variant("after"),
        Variant("after, traceparent", traceparent=TRACEPARENT),
        Variant("after, traceparent, INFO line", ("--log-level", "INFO"), traceparent=TRACEPARENT),
        Variant("after, --tracing, traceparent", env=tracing, traceparent=TRACEPARENT),
        Variant("after, --tracing", env=tracing),
    ]
    servers = [start(v, i, model.path, base) for i, v in enumerate(variants)]
    trials: dict[str, list[dict[str, float]]] = {v.label: [] for v in variants}
    try:
        for rep in range(args.reps):
            for variant, server in zip(variants, servers, strict=True):
                body = Body(body_path, traceparent=variant.traceparent)
                cpu_before = launch.cpu_seconds(server)
                stats = run_wrk(server.url, body, args.connections, args.duration)
                stats["cpu_us"] = (
                    (launch.cpu_seconds(server) - cpu_before) / stats["requests"] * 1e6
                )
                trials[variant.label].append(stats)
                print(f"rep {rep} {variant.label:34} {stats['rps']:7.0f} req/s "  # noqa: T201
                      f"p99 {stats['p99_us'] / 1e3:6.2f} ms cpu {stats['cpu_us']:5.0f} µs/req "
                      f"errors {stats['errors']:.0f}", flush=True)  # fmt: skip
                time.sleep(0.5)
    finally:
        for server in servers:
            launch.stop(server)
        receiver.terminate()
        receiver.wait(10)
    print(report(trials, variants[0].label, args))  # noqa: T201


def report(trials: dict[str, list[dict[str, float]]], before: str, args: argparse.Namespace) -> str:
    def median(label: str, key: str) -> float:
        return statistics.median(t[key] for t in trials[label])

    def spread(label: str) -> str:
        values = [t["rps"] for t in trials[label]]
        mid = statistics.median(values)
        return f"±{max(abs(v - mid) for v in values) / mid * 100:.0f}%"

    lines = [
        f"MLP-small JSON, {args.connections} connections, {args.reps} interleaved rounds of "
        f"{args.duration:g} s, medians; load average at the end {os.getloadavg()[0]:.2f}",
        "",
        "| Server | req/s | ratio | rps spread | p99 ms | CPU µs/req | CPU ratio | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in trials:
        rps, cpu = median(label, "rps"), median(label, "cpu_us")
        errors = sum(t["errors"] for t in trials[label])
        lines.append(
            f"| {label} | {rps:,.0f} | {rps / median(before, 'rps'):.2f}× | {spread(label)} | "
            f"{median(label, 'p99_us') / 1e3:.2f} | {cpu:,.0f} | "
            f"{cpu / median(before, 'cpu_us'):.2f}× | {errors:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
