"""Slow clients against ``modelfleet serve``: ``.venv/bin/python bench/slow_clients.py
[--connections 3000 --header-read-timeout 10]``.

Starts the runtime (bundled iris, pinned to CPU 0; this driver on CPU 1), measures iris
requests on fresh connections for a few seconds (before), then opens N connections that send
half a request header and nothing more, and measures the same requests while they are open
(during), how long after opening the server closed each slow connection, and the server's
memory with them open. Prints a Markdown table for bench/RESULTS.md. The slow clients and the
traffic are tests/helpers/slow_clients.py's, as the reliability test uses them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from modelfleet_runtime.http_limits import raise_descriptor_limit
from tests.helpers.runtime import serve_process, wait_until
from tests.helpers.slow_clients import (
    HALF_HEADER,
    Traffic,
    close_all,
    metric,
    open_slow,
    watch_until_closed,
)


def latency(results: list[tuple[int, float, float]]) -> str:
    if not results:
        return "none"
    ms = sorted(seconds * 1000 for _, seconds, _ in results)
    p99 = ms[min(len(ms) - 1, round(len(ms) * 0.99))]
    failed = sum(status != 200 for status, _, _ in results)
    return (
        f"{len(ms)} requests, {failed} failed, p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms"
    )


def window(results: list[tuple[int, float, float]], start: float, end: float) -> str:
    """The latency of the requests that started between ``start`` and ``end``."""
    return latency([r for r in results if start <= r[2] < end])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--header-read-timeout", type=float, default=10.0)
    parser.add_argument("--before", type=float, default=5.0, help="seconds of traffic alone")
    args = parser.parse_args()
    raise_descriptor_limit(args.connections + 1000)
    flags = ["--header-read-timeout", str(args.header_read_timeout), "--grpc-port", "0"]
    flags += ["--max-connections", str(args.connections + 1000), "--log-level", "WARNING"]
    with tempfile.TemporaryDirectory() as tmp, serve_process(Path(tmp), *flags) as served:
        os.sched_setaffinity(served.process.pid, {0})
        os.sched_setaffinity(0, {1})
        server = psutil.Process(served.process.pid)
        port = int(served.url.rsplit(":", 1)[1])
        traffic = Traffic(served.url)
        traffic.start()
        time.sleep(args.before)  # a measuring period, not a wait on a condition
        before = list(traffic.results)
        rss_before = server.memory_info().rss
        started = time.monotonic()
        slow = open_slow(port, args.connections, HALF_HEADER)
        opened_at = time.monotonic()
        opened_in = opened_at - started
        gauge = "modelfleet_http_connections_open"  # the server has taken every one
        wait_until(lambda: metric(served.url, gauge)[""] >= args.connections, 30, "accepted")
        rss_open = server.memory_info().rss
        try:
            still_open = watch_until_closed(slow, args.header_read_timeout + 30)
        finally:
            during = traffic.stop()[len(before) :]
            close_all(slow)
        closed = sorted(w.closed_after for w in slow if w.closed_after is not None)
        ends = [w.opened + w.closed_after for w in slow if w.closed_after is not None]
        first_close, last_close = min(ends), max(ends)
        answered = sum(w.answer.startswith(b"HTTP/1.1 408 ") for w in slow)

    grown = rss_open - rss_before
    spread = f"min {closed[0]:.2f} s, median {statistics.median(closed):.2f} s"
    rows = [
        ("slow connections (half a header each)", f"{len(slow)}, opened in {opened_in:.1f} s"),
        ("header read timeout", f"{args.header_read_timeout:g} s"),
        ("closed by the server", f"{len(closed)} ({answered} answered 408)"),
        ("left open", str(len(still_open))),
        ("closed after (from opening)", f"{spread}, max {closed[-1]:.2f} s"),
        (
            "server RSS with them open",
            f"+{grown / 2**20:.1f} MiB ({grown / len(slow) / 1024:.1f} KiB each)",
        ),
        ("iris requests before (fresh connections)", latency(before)),
        ("iris requests during (all)", latency(during)),
        ("... while the slow ones were opened", window(during, started, opened_at)),
        ("... while they were held", window(during, opened_at, first_close)),
        ("... while they were closed", window(during, first_close, last_close + 0.1)),
    ]
    print("| | |\n| --- | --- |")  # noqa: T201
    for name, value in rows:
        print(f"| {name} | {value} |")  # noqa: T201


if __name__ == "__main__":
    main()
