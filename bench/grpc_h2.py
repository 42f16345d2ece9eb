"""gRPC on grpc.aio against gRPC on uvicorn's HTTP/2: ``bench/run.sh h2 [--reps 3]``.

Issue 14 asks for 3x the best peer's gRPC throughput, and all three gRPC servers (ours,
KServe's, MLServer's) run on grpc.aio, whose own floor (``servers/grpc_floor.py``) was only
1.5x KServe in bench/RESULTS.md. This measures the one other Python HTTP/2 stack with
response trailers that uvicorn offers (``servers/grpc_h2_floor.py``: uvicorn 0.54 with zttp)
doing the same work per call, in one interleaved run: MLP-small, ghz on CPU 1 with 1, 16 and
64 concurrent streams on one connection, both servers on CPU 0, both answers checked first.
It prints req/s, p99, errors and the servers' CPU time per call. An experiment for the next
step on gRPC, not a product path: its venv (bench/.work/venvs/h2) holds grpcio and zttp.

zttp 0.0.35 caps the streams one HTTP/2 connection may ever open at 4,096
(``Limits.max_streams`` in its src/core/h2/connection.zig, a guard against rapid-reset churn,
CVE-2023-44487), with no setting from Python, and then ends the connection with GOAWAY
ENHANCE_YOUR_CALM, failing the calls in flight. The h2 floor therefore ends each connection
gracefully first (``servers/grpc_h2_floor.py``, ``H2_STREAM_BUDGET``). ghz's errors column
still shows calls its old grpc-go client started on a draining connection; the last lines count
what grpcio (``grpcio_calls.py``, the client tritonclient and ours use) sees: ``--grpcio-calls``
calls at 64 streams on one channel against each floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
from pathlib import Path

import answers
import launch
import models
import onnxruntime as ort
from load import require_ghz, run_ghz

WORK = Path(__file__).resolve().parent / ".work"
STREAMS = (1, 16, 64)


def grpcio_calls(address: str, calls: int) -> str:
    """``grpcio_calls.py`` on CPU 1, from the "ours" venv (grpcio and the OIP stubs)."""
    python = str(WORK / "venvs" / "ours" / "bin" / "python")
    script = str(Path(__file__).resolve().parent / "grpcio_calls.py")
    command = ["taskset", "-c", "1", python, script, address, "mlp_small", "64", str(calls)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per trial")
    parser.add_argument("--grpcio-calls", type=int, default=20_000, help="0: none")
    parser.add_argument(
        "--ours", action="store_true",
        help="also ours on grpc.aio, ours on uvicorn's HTTP/2 (servers/grpc_h2_ours.py, and "
        "--grpc-transport h2) and KServe",
    )  # fmt: skip
    args = parser.parse_args()
    ghz = require_ghz(WORK)
    os.sched_setaffinity(0, {1})  # this driver shares the load generator's CPU
    model = models.build(WORK)["mlp_small"]
    x = models.request_input(model)
    data = WORK / "bodies" / "h2-mlp_small.grpc.json"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(models.grpc_body(model.name, x))
    expected = ort.InferenceSession(str(model.path)).run(["output0"], {"input0": x})[0]
    servers = {  # label -> (server, its gRPC address)
        "grpc.aio floor": launch.start_floor(
            WORK, "grpc.aio floor", model.name, model.path, 18310, "grpc_floor.py", "h2"
        ),
        "uvicorn h2 floor": launch.start_floor(
            WORK, "uvicorn h2 floor", model.name, model.path, 18320, "grpc_h2_floor.py", "h2"
        ),
    }
    addresses = {"grpc.aio floor": "127.0.0.1:18311", "uvicorn h2 floor": "127.0.0.1:18320"}
    if args.ours:
        servers["ours"] = launch.start_ours(WORK, "ours", model.name, model.path, 18330)
        servers["ours h2"] = launch.start_floor(
            WORK, "ours h2", model.name, model.path, 18340, "grpc_h2_ours.py", "h2ours"
        )
        servers["ours h2 product"] = launch.start_ours(
            WORK, "ours h2 product", model.name, model.path, 18360, "--grpc-transport", "h2"
        )
        servers["kserve"] = launch.start_kserve(
            WORK, "kserve", model.name, model.path, 18350, grpc=True
        )
        addresses |= {"ours": "127.0.0.1:18331", "ours h2": "127.0.0.1:18340",
                      "ours h2 product": "127.0.0.1:18361",
                      "kserve": "127.0.0.1:18351"}  # fmt: skip
    cpu: dict[tuple[str, int], list[float]] = {}
    rps: dict[tuple[str, int], list[float]] = {}
    try:
        for label, server in servers.items():
            launch.wait_ready(server)
            problem = answers.check_grpc(addresses[label], model.name, data, expected)
            if problem:
                raise SystemExit(f"{label}: wrong answer: {problem}")
        for rep in range(args.reps):
            for streams in STREAMS:
                for label, server in servers.items():
                    before = launch.cpu_seconds(server)
                    stats = run_ghz(ghz, addresses[label], data, streams, args.duration)
                    used = (launch.cpu_seconds(server) - before) / max(stats["requests"], 1)
                    cpu.setdefault((label, streams), []).append(used * 1e6)
                    rps.setdefault((label, streams), []).append(stats["rps"])
                    line = (
                        f"rep {rep} {label:16} {streams:3} streams {stats['rps']:7,.0f} req/s "
                        f"p99 {stats['p99_us'] / 1000:6.2f} ms errors {stats['errors']:.0f} "
                        f"cpu {used * 1e6:5.0f} µs/call"
                    )
                    print(line, flush=True)  # noqa: T201
        for label, address in addresses.items():
            if args.grpcio_calls:
                print(f"grpcio, 64 streams, {label}: {grpcio_calls(address, args.grpcio_calls)}")  # noqa: T201
    finally:
        for server in servers.values():
            launch.stop(server)
    for streams in STREAMS:
        aio, h2 = (statistics.median(cpu[label, streams]) for label in list(addresses)[:2])
        line = (
            f"{streams:3} streams: CPU per call, grpc.aio {aio:.0f} µs, uvicorn h2 {h2:.0f} µs: "
            f"{aio / h2:.2f}x less on HTTP/2 by uvicorn"
        )
        print(line)  # noqa: T201
        if "kserve" in addresses:
            kserve = statistics.median(rps["kserve", streams])
            ratios = ", ".join(
                f"{label} {statistics.median(rps[label, streams]) / kserve:.2f}x"
                for label in addresses
            )
            print(f"{streams:3} streams, median req/s against KServe's: {ratios}")  # noqa: T201


if __name__ == "__main__":
    main()
