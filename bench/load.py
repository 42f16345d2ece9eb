"""The load generators, pinned to CPU 1: Debian's wrk (C, epoll) with bench/post.lua for HTTP,
and ghz (Go, built from the Go module proxy by ``require_ghz``) for gRPC.

``run_wrk`` and ``run_ghz`` run one trial each and return the tool's own summary in one shape
(requests, latency percentiles in microseconds, errors). Called by ``bench/run.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "post.lua"
PROTO = Path(__file__).resolve().parent.parent / "client/modelfleet_client/oip/inference.proto"
GHZ_VERSION = "v0.93.0"  # the newest the Go module proxy lists


@dataclass(frozen=True)
class Body:
    """One request body on disk plus the headers that go with it."""

    path: Path
    content_type: str = "application/json"
    header_length: int | None = None  # Inference-Header-Content-Length, binary extension only
    traceparent: str | None = None  # a W3C traceparent header on every request


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: apt-get update && apt-get install -y wrk")
    return wrk


def run_wrk(
    url: str, body: Body, connections: int, seconds: float, cpu: int = 1, close: bool = False
) -> dict[str, float]:
    """One wrk trial; ``rps`` is requests answered per second of wrk's own clock. ``close``:
    a new connection per request (wrk sends "Connection: close"). https:// URLs work (wrk
    speaks TLS through OpenSSL, without checking the certificate)."""
    env = dict(os.environ)
    env["BENCH_CLOSE"] = "1" if close else ""
    env["BENCH_BODY"] = str(body.path)
    env["BENCH_CTYPE"] = body.content_type
    env["BENCH_IHCL"] = "" if body.header_length is None else str(body.header_length)
    env["BENCH_TRACEPARENT"] = body.traceparent or ""
    command = [
        "taskset", "-c", str(cpu), require_wrk(), "-t1", f"-c{connections}",
        f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA), url,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            stats: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
            stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
            stats["errors"] = sum(v for k, v in stats.items() if k.startswith("errors_"))
            return stats
    raise RuntimeError(f"wrk gave no summary (rc {done.returncode}): {done.stderr[-2000:]}")


def require_ghz(work: Path) -> str:
    """ghz, built once into WORK/bin from the Go module proxy (a minute; needs Go)."""
    ghz = work / "bin" / "ghz"
    if not ghz.exists():
        env = {**os.environ, "GOBIN": str(ghz.parent)}
        command = ["go", "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"]
        subprocess.run(command, env=env, check=True)
    return str(ghz)


def run_ghz(
    ghz: str, address: str, data: Path, streams: int, seconds: float, cpu: int = 1
) -> dict[str, float]:
    """One ghz trial: ``streams`` concurrent ModelInfer calls on one HTTP/2 connection (as a
    gRPC client with one channel sends them). Calls still in flight when the time is up are
    left out of the count (``--duration-stop ignore``), not counted as errors."""
    command = [
        "taskset", "-c", str(cpu), ghz, "--insecure", "--proto", str(PROTO),
        "--import-paths", str(PROTO.parent.parent.parent),
        "--call", "inference.GRPCInferenceService.ModelInfer", "--data-file", str(data),
        "-c", str(streams), "--connections", "1", "-z", f"{max(1, round(seconds))}s",
        "--duration-stop", "ignore", "--cpus", "1", "--timeout", "10s", "--format", "json",
        address,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        message = f"ghz gave no report (rc {done.returncode}): {done.stderr[-2000:]}"
        raise RuntimeError(message) from None
    latency = {p["percentage"]: p["latency"] / 1000 for p in report["latencyDistribution"] or []}
    codes = report.get("statusCodeDistribution") or {}
    ok = codes.get("OK", 0)
    return {
        "requests": ok,
        "duration_us": report["total"] / 1000,
        "rps": ok / (report["total"] / 1e9),
        "p50_us": latency.get(50, 0.0),
        "p90_us": latency.get(90, 0.0),
        "p99_us": latency.get(99, 0.0),
        "mean_us": report["average"] / 1000,
        "errors": sum(codes.values()) - ok,
    }
