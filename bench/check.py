"""The hot path's regression guard: ``bench/run.sh check [--reps 3 --duration 3 --min 0.50]``.

Run it before merging a change to the request path. It serves MLP-small from this checkout
and from the raw-ASGI floor (``bench/servers/asgi_floor.py``: the same uvicorn, uvloop and
httptools with nothing of ours), both pinned to CPU 0, checks both answers against ONNX
Runtime, then drives them with wrk on CPU 1 at 16 connections, repetitions interleaved, and
prints our share of the floor's throughput and CPU time per request. The share is a ratio
within one run, so it means the same on a busy machine as on a quiet one, which absolute
req/s do not. It exits 1 when the share falls below ``--min`` (the last measured share less a
margin: see bench/RESULTS.md), so a slower change fails loudly. About 30 s.

``--baseline REV`` also serves our runtime at commit REV (``launch.baseline``) in the same
interleaved run and prints this checkout's CPU per request against it: a change's own
before/after, which the floor's share alone shows less sharply.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import answers
import launch
import models
import onnxruntime as ort
from load import Body, require_wrk, run_wrk

WORK = Path(__file__).resolve().parent / ".work"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per trial")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--min", type=float, default=0.50, help="lowest share of the floor")
    parser.add_argument("--baseline", metavar="REV", help="also serve our runtime at REV")
    args = parser.parse_args()
    require_wrk()
    os.sched_setaffinity(0, {1})  # this driver shares the load generator's CPU
    model = models.build(WORK)["mlp_small"]
    x = models.request_input(model)
    body = Body(WORK / "bodies" / "check-mlp_small.json")
    body.path.parent.mkdir(parents=True, exist_ok=True)
    body.path.write_bytes(models.json_body(x))
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    expected = session.run(["output0"], {"input0": x})[0]
    servers = [
        launch.start_ours(WORK, "ours", model.name, model.path, 18110),
        launch.start_floor(WORK, "floor", model.name, model.path, 18118),
    ]
    if args.baseline:
        venv = f"ours-{launch.baseline(WORK, args.baseline)}"
        label = f"ours@{args.baseline}"
        servers.append(launch.start_ours(WORK, label, model.name, model.path, 18126, venv=venv))
    try:
        for server in servers:
            launch.wait_ready(server)
            problem = answers.check(server.url, body, expected)
            if problem:
                raise SystemExit(f"{server.label}: wrong answer: {problem}")
            run_wrk(server.url, body, args.connections, 1)  # warm-up
        rps: dict[str, list[float]] = {s.label: [] for s in servers}
        cpu: dict[str, list[float]] = {s.label: [] for s in servers}
        for rep in range(args.reps):
            for server in servers:
                before = launch.cpu_seconds(server)
                stats = run_wrk(server.url, body, args.connections, args.duration)
                if stats["errors"]:
                    raise SystemExit(f"{server.label}: {stats['errors']:.0f} errors under load")
                rps[server.label].append(stats["rps"])
                used = (launch.cpu_seconds(server) - before) / max(stats["requests"], 1) * 1e6
                cpu[server.label].append(used)
                print(f"rep {rep} {server.label:12} {stats['rps']:8.0f} req/s "  # noqa: T201
                      f"p99 {stats['p99_us'] / 1000:6.2f} ms cpu {used:5.0f} µs/req",
                      flush=True)  # fmt: skip
    finally:
        for server in servers:
            launch.stop(server)
    ours, floor = (statistics.median(rps[label]) for label in ("ours", "floor"))
    cpu_ours, cpu_floor = (statistics.median(cpu[label]) for label in ("ours", "floor"))
    share = ours / floor
    print(f"MLP-small, {args.connections} connections: ours {ours:,.0f} req/s, floor "  # noqa: T201
          f"{floor:,.0f} req/s: {share:.0%} of the floor (CPU per request {cpu_ours:.0f} vs "
          f"{cpu_floor:.0f} µs; load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    if args.baseline:
        label = f"ours@{args.baseline}"
        before_rps, before_cpu = statistics.median(rps[label]), statistics.median(cpu[label])
        print(f"against {label}: {ours / before_rps:.2f}x the req/s, "  # noqa: T201
              f"{cpu_ours / before_cpu:.2f}x the CPU per request ({cpu_ours:.0f} vs "
              f"{before_cpu:.0f} µs; it had {before_rps / floor:.0%} of the floor)")  # fmt: skip
    if share < args.min:
        print(f"below the guard's {args.min:.0%}: a regression on the hot path?")  # noqa: T201
        sys.exit(1)


if __name__ == "__main__":
    main()
