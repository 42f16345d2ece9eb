"""The load generator: Debian's wrk (C, epoll) with bench/post.lua, pinned to CPU 1.

``run_wrk`` runs one trial and returns wrk's own summary (requests, latency percentiles in
microseconds, errors). Called by ``bench/run.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "post.lua"


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
