"""The runtime benchmark, end to end: ``bench/run.sh [--reps N --duration S --only ...]``.

Builds the models, measures the in-process limits, starts our server, KServe's ModelServer and
MLServer (each from its own venv, pinned to CPU 0), checks every answer against ONNX Runtime,
runs wrk on CPU 1 with repetitions interleaved across servers, and writes the "Runtime
performance" section of bench/RESULTS.md plus bench/runtime_perf.png. Raw trials go to
bench/.work/results.json.

Before and after a change: ``--baseline REV`` also runs our runtime at commit REV (a
``git worktree`` under bench/.work/worktrees/, its own venv bench/.work/venvs/ours-COMMIT,
made on first use by ``launch.baseline``) beside each of our servers, labelled
``ours@COMMIT``, ``ours+batch0@COMMIT``... and interleaved with the others like any server, so
the two commits are compared within one run on one noisy machine. Such a run leaves the
"Runtime performance" section as it is (that compares one commit with its peers): it prints
the before/after table (``report.render_baseline``: req/s, p99 and CPU per request, this
checkout against REV) and writes it to bench/.work/baseline.md, for the change's own section
of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import answers
import launch
import models
import numpy as np
import onnxruntime as ort
import report
from load import Body, require_ghz, require_wrk, run_ghz, run_wrk

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
TITLES = {
    "small": "MLP-small 64→256→256→10, batch 1",
    "wide": "MLP-wide 512→2048→2048→10, batch 1",
    "conv": "conv 1×3×224×224: binary vs JSON (ours)",
    "grpc": "MLP-small over gRPC (ModelInfer), batch 1",
}
OURS_BATCH_FLAGS = ("--max-batch-size", "32", "--max-queue-delay-us", "2000")


TARGETS: list[dict[str, Any]] = [
    {
        "title": "MLP-small, 16 conns: ≥4× better peer, p99 ≤ half",
        "scenario": "small",
        "ours": "ours",
        "versus": ["kserve", "mlserver"],
        "connections": 16,
        "ratio": 4,
        "p99_factor": 0.5,
    },
    {
        "title": "MLP-small, 16 conns: ≥85% of the raw-ASGI floor",
        "scenario": "small",
        "ours": "ours",
        "versus": ["raw-ASGI floor"],
        "connections": 16,
        "ratio": 0.85,
        "p99": False,
    },
    {
        "title": "gRPC, MLP-small, 16 streams: ≥3× better peer",
        "scenario": "grpc",
        "ours": "ours",
        "versus": ["kserve", "mlserver"],
        "connections": 16,
        "ratio": 3,
    },
    {
        "title": "gRPC, MLP-small, 16 streams, ours with --grpc-transport h2: ≥3× better peer",
        "scenario": "grpc",
        "ours": "ours h2",
        "versus": ["kserve", "mlserver"],
        "connections": 16,
        "ratio": 3,
    },
    {
        "title": "MLP-small, 16 conns, with the proposed fast path + inline run*",
        "scenario": "small",
        "ours": "ours+fastpath+inline*",
        "versus": ["kserve", "mlserver"],
        "connections": 16,
        "ratio": 3,
    },
    {
        "title": "MLP-small, 16 conns, ours with zero-delay batching",
        "scenario": "small",
        "ours": "ours+batch0",
        "versus": ["kserve", "mlserver"],
        "connections": 16,
        "ratio": 3,
    },
    {
        "title": "MLP-wide, 64 conns, batching: ≥4× MLServer adaptive, p99 ≤ a quarter",
        "scenario": "wide",
        "ours": "ours+batching",
        "versus": ["mlserver+adaptive"],
        "connections": 64,
        "ratio": 4,
        "p99_factor": 0.25,
    },
    {
        "title": "MLP-wide, 16 conns, batching: ≥3× MLServer adaptive, p99 ≤ a quarter",
        "scenario": "wide",
        "ours": "ours+batching",
        "versus": ["mlserver+adaptive"],
        "connections": 16,
        "ratio": 3,
        "p99_factor": 0.25,
    },
    {
        "title": "conv 1×3×224×224, 4 conns: binary ≥5× JSON",
        "scenario": "conv",
        "ours": "ours binary",
        "versus": ["ours JSON"],
        "connections": 4,
        "ratio": 5,
        "p99": False,
    },
]


@dataclass
class Target:
    label: str
    server: launch.Server
    body: Body
    grpc: Path | None = None  # ghz's request (JSON): the target is the server's gRPC port


@dataclass
class Scenario:
    name: str
    model: str
    connections: list[int]
    targets: list[Target] = field(default_factory=list)


def inprocess(model: models.BenchModel, body: Path) -> dict[str, float]:
    command = [
        "taskset",
        "-c",
        "0",
        sys.executable,
        str(BENCH / "inprocess.py"),
        str(model.path),
        str(body),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def start_servers(
    name: str, model: models.BenchModel, skip: set[str], notes: list[str], baseline: str | None
) -> list[launch.Server]:
    servers: list[launch.Server] = []
    path, m = model.path, model.name

    def ours(label: str, port: int, *flags: str) -> None:
        servers.append(launch.start_ours(WORK, label, m, path, port, *flags))
        if baseline:  # the same server at the baseline commit, 100 ports up
            servers.append(launch.start_ours(WORK, f"{label}@{baseline}", m, path, port + 100,
                                             *flags, venv=f"ours-{baseline}"))  # fmt: skip

    try:
        if name == "small":
            ours("ours", 18010)
            if "ours+batch0" not in skip:  # batching with no delay: one thread hop per batch
                ours("ours+batch0", 18015, "--max-batch-size", "32", "--max-queue-delay-us", "0")
            if "floor" not in skip:  # reference: raw ASGI, no framework (not a peer)
                servers.append(launch.start_floor(WORK, "raw-ASGI floor", m, path, 18018))
            if "kserve" not in skip:
                servers.append(launch.start_kserve(WORK, "kserve", m, path, 18020))
            if "mlserver" not in skip:
                servers.append(launch.start_mlserver(WORK, "mlserver", m, path, 18030, None))
        elif name == "wide":
            ours("ours+batching", 18040, *OURS_BATCH_FLAGS)
            if "mlserver" not in skip:  # adaptive batching: max batch 32, max wait 5 ms
                servers.append(
                    launch.start_mlserver(WORK, "mlserver+adaptive", m, path, 18050, (32, 0.005))
                )
            if "kserve" not in skip:
                servers.append(launch.start_kserve(WORK, "kserve", m, path, 18060))
        elif name == "grpc":  # every server's gRPC port (HTTP stays up for readiness)
            ours("ours", 18080)
            if "ours h2" not in skip:  # the opt-in transport (no baseline: older commits lack it)
                servers.append(launch.start_ours(WORK, "ours h2", m, path, 18082,
                                                 "--grpc-transport", "h2"))  # fmt: skip
            if "floor" not in skip:  # reference: grpc.aio with nothing else (not a peer)
                servers.append(
                    launch.start_floor(WORK, "grpc.aio floor", m, path, 18085, "grpc_floor.py")
                )
            if "kserve" not in skip:
                servers.append(launch.start_kserve(WORK, "kserve", m, path, 18090, grpc=True))
            if "mlserver" not in skip:
                servers.append(launch.start_mlserver(WORK, "mlserver", m, path, 18095, None))
        else:
            ours("ours", 18070)
        ready = []
        for server in servers:
            try:
                launch.wait_ready(server)
                ready.append(server)
            except RuntimeError as error:
                if server.kind == "ours":
                    raise
                launch.stop(server)  # a peer that cannot start is reported, not fatal
                notes.append(f"{name}/{server.label} did not start, not timed: {error}")
        servers = ready
    except BaseException:
        for server in servers:
            launch.stop(server)
        raise
    return servers


def run_scenario(scenario: Scenario, expected: np.ndarray, reps: int, seconds: float,
                 notes: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    targets = []
    for t in scenario.targets:
        if t.grpc is None:
            problem = answers.check(t.server.url, t.body, expected)
        else:
            problem = answers.check_grpc(t.server.grpc, t.server.model, t.grpc, expected)
        if problem:
            notes.append(f"{scenario.name}/{t.label}: answer check failed, not timed: {problem}")
        else:
            targets.append(t)

    def load(t: Target, c: int, seconds: float) -> dict[str, float]:
        if t.grpc is None:
            return run_wrk(t.server.url, t.body, c, seconds)
        return run_ghz(require_ghz(WORK), t.server.grpc, t.grpc, c, seconds)

    for t in targets:  # warm-up: JIT-free, but lets caches, pools and batchers settle
        load(t, max(scenario.connections), 1)
    trials = []
    for rep in range(reps):
        for c in scenario.connections:
            for t in targets:
                cpu_before = launch.cpu_seconds(t.server)
                stats = load(t, c, seconds)
                cpu = launch.cpu_seconds(t.server) - cpu_before
                stats["cpu_us"] = cpu / max(stats["requests"], 1) * 1e6
                trials.append({"scenario": scenario.name, "target": t.label, "connections": c,
                               "rep": rep, **stats})  # fmt: skip
                print(f"  {scenario.name:5} {t.label:22} c={c:<3} rep={rep} "  # noqa: T201
                      f"{stats['rps']:9.0f} req/s p50={stats['p50_us'] / 1000:7.2f} ms "
                      f"p99={stats['p99_us'] / 1000:7.2f} ms cpu={stats['cpu_us']:6.0f} µs/req "
                      f"errors={stats['errors']:.0f}",
                      flush=True)  # fmt: skip
    return trials


def versions() -> str:
    found = []
    for venv, dist in (("ours", "modelfleet"), ("kserve", "kserve"), ("mlserver", "mlserver")):
        python = WORK / "venvs" / venv / "bin/python"
        code = f"import importlib.metadata as m; print(m.version('{dist}'))"
        try:
            v = subprocess.run(
                [str(python), "-c", code], capture_output=True, text=True, check=True
            )
            found.append(f"{dist} {v.stdout.strip()}")
        except (OSError, subprocess.CalledProcessError):
            found.append(f"{dist} (not installed)")
    found.append(f"onnxruntime {ort.__version__}")
    return ", ".join(found)


def commit() -> str:
    """This checkout's commit, and the runtime or client files that differ from it: what the
    "ours" venv (editable) runs, others' work in progress included."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(BENCH.parent), *args],
                              capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout

    changed = [line[3:] for line in git("status", "--porcelain", "runtime", "client").splitlines()]
    edits = f" with uncommitted changes to {', '.join(changed)}" if changed else ""
    return git("rev-parse", "--short", "HEAD").strip() + edits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per trial")
    parser.add_argument("--only", nargs="*", default=["small", "wide", "conv", "grpc"])
    parser.add_argument("--skip", nargs="*", default=[], help="peers to leave out")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--baseline", metavar="REV", help="also run our runtime at commit REV")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render from bench/.work/results.json"
    )
    args = parser.parse_args()
    if args.report_only:
        run = json.loads((WORK / "results.json").read_text())
        run["targets"] = TARGETS
        write(run, args.no_write)
        return
    require_wrk()
    if "grpc" in args.only:
        require_ghz(WORK)
    baseline = launch.baseline(WORK, args.baseline) if args.baseline else None
    load_before, measured = os.getloadavg(), commit()  # the code the servers start with
    os.sched_setaffinity(0, {1})  # this driver shares the load generator's CPU
    built = models.build(WORK)
    bodies = WORK / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)
    trials: list[dict[str, Any]] = []
    notes: list[str] = []
    limits: dict[str, dict[str, float]] = {}
    latency_notes: list[str] = []
    for name in args.only:
        model = built[
            {"small": "mlp_small", "wide": "mlp_wide", "conv": "conv", "grpc": "mlp_small"}[name]
        ]
        x = models.request_input(model)
        json_path = bodies / f"{model.name}.json"
        json_path.write_bytes(models.json_body(x))
        session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
        expected = session.run(["output0"], {"input0": x})[0]
        if name != "grpc":  # the same model as "small"
            limits[model.name] = inprocess(model, json_path)
            print(f"{name}: in-process {limits[model.name]}", flush=True)  # noqa: T201
        servers = start_servers(name, model, set(args.skip), notes, baseline)
        try:
            scenario = Scenario(
                name, model.name, [1, 4, 16, 64] if name == "small" else [1, 16, 64]
            )
            if name == "grpc":
                grpc_path = bodies / f"{model.name}.grpc.json"
                grpc_path.write_bytes(models.grpc_body(model.name, x))
                scenario.targets = [Target(s.label, s, Body(json_path), grpc_path) for s in servers]
            if name == "conv":
                scenario.connections = [1, 4]
                raw, split = models.binary_body(x)
                bin_path = bodies / f"{model.name}.bin"
                bin_path.write_bytes(raw)
                binary = Body(bin_path, "application/octet-stream", split)
                scenario.targets = [
                    Target(f"{s.label} {kind}", s, body)
                    for s in servers
                    for kind, body in (("JSON", Body(json_path)), ("binary", binary))
                ]
            elif name != "grpc":
                scenario.targets = [Target(s.label, s, Body(json_path)) for s in servers]
            trials += run_scenario(scenario, expected, args.reps, args.duration, notes)
        finally:
            for server in servers:
                launch.stop(server)
    run = {
        "command": "bench/run.sh " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                   f"Python {platform.python_version()}",  # fmt: skip
        "reps": args.reps, "duration": args.duration, "versions": versions(),
        "commit": measured, "baseline": baseline,
        "trials": trials, "inprocess": limits, "notes": notes, "titles": TITLES,
        "plot": "runtime_perf.png",
        "peers": {"small": ["kserve", "mlserver"], "wide": ["mlserver+adaptive", "kserve"],
                  "conv": ["ours JSON"], "grpc": ["kserve", "mlserver"]},
        "targets": TARGETS,
    }  # fmt: skip
    agg = report.aggregate(trials)
    if ("small", "ours", 1) in agg and "mlp_small" in limits:
        ours = agg[("small", "ours", 1)]
        inproc = limits["mlp_small"]["json_us"] / 1000
        latency_notes.append(
            f"MLP-small, 1 connection: our p50 {ours['p50_ms']:.3f} ms vs the in-process JSON "
            f"path {inproc:.3f} ms: **{(ours['p50_ms'] - inproc) * 1000:.0f} µs added** by HTTP, "
            f"the event loop and the framework (loopback and wrk's own time included)."
        )
    run["latency_notes"] = latency_notes
    load_after = os.getloadavg()
    run["notes"] = notes + [
        f"Load average (1 min) of this 2-CPU machine: {load_before[0]:.1f} at the start, "
        f"{load_after[0]:.1f} at the end; above 2 means other work competed for the CPUs.",
        "The machine is shared with other engineers' builds and tests (2 cores): absolute "
        "figures drift between runs; only ratios within one interleaved run count. "
        "'rps spread' is half the max-min range across repetitions, relative to the median.",
        "KServe's ModelServer has no built-in adaptive batching (KServe batches in a separate "
        "agent container); it runs unbatched in the wide scenario as a reference only.",
    ]
    (WORK / "results.json").write_text(json.dumps(run, indent=1, default=str))
    write(run, args.no_write)


def write(run: dict[str, Any], no_write: bool) -> None:
    if run.get("baseline"):  # before/after: its own table, RESULTS.md left to the change
        table = report.render_baseline(run)
        (WORK / "baseline.md").write_text(table)
        print(f"{table}\nwritten to {WORK / 'baseline.md'}")  # noqa: T201
    elif not no_write:
        report.plot(run, BENCH / "runtime_perf.png")
        report.write_section(BENCH / "RESULTS.md", report.render(run))
        print(f"wrote {BENCH / 'RESULTS.md'} and {BENCH / 'runtime_perf.png'}")  # noqa: T201


if __name__ == "__main__":
    main()
