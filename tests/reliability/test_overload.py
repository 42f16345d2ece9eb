"""S15: above capacity the server sheds load at once. With a slow model (~0.1-0.3 s a request)
and ``--max-concurrency 4``, bursts of 48 concurrent requests get 503 ``{"error"}``, the
admitted ones succeed, memory stays bounded, and normal service resumes within 10 s of the
burst ending. "At once" is shown by order, not by a clock: while four requests to a much
slower version hold every slot, 44 more are all refused before any of the four is answered
(a server that waited for a slot could not refuse one before a slot freed)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from tests.helpers import onnx_models
from tests.helpers.runtime import serve_process, wait_until
from tests.helpers.waiting import http_status

ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
BURST = 48
CAPACITY = 4
HELD_STEPS = 96
"""The slower version's MatMuls: seconds a request, against milliseconds a refusal."""


def timed_post(url: str, client: httpx.Client | None = None) -> tuple[int, float, str]:
    """POST one request; (status, seconds, body). A shared client keeps the test's own cost
    (building a client per request costs tens of ms of GIL time) out of the timing."""
    started = time.monotonic()
    try:
        if client is None:
            answer = httpx.post(url, json={"inputs": [ROW]}, timeout=60)
        else:
            answer = client.post(url, json={"inputs": [ROW]})
    except httpx.TransportError as exc:
        return 0, time.monotonic() - started, repr(exc)
    return answer.status_code, time.monotonic() - started, answer.text


def test_bursts_above_capacity_get_fast_503s_and_service_recovers(tmp_path: Path) -> None:
    versions = {1: onnx_models.slow(), 2: onnx_models.slow(steps=HELD_STEPS)}
    repo = onnx_models.write_repository(tmp_path / "slow", versions)
    args = ["--model-uri", str(repo), "--max-concurrency", str(CAPACITY)]
    args += ["--version-policy", "all", "--inference-threads", str(CAPACITY)]
    args += ["--intra-op-threads", "1", "--poll-interval", "0", "--log-level", "WARNING"]
    with serve_process(tmp_path, *args, wait_ready=False) as served:
        url = f"{served.url}/v2/models/slow/versions/1/infer"
        held_url = f"{served.url}/v2/models/slow/versions/2/infer"
        ready = f"{served.url}/v2/health/ready"  # every version the policy wants, loaded
        wait_until(lambda: http_status(ready) == 200, 120, "both versions loaded")
        process = psutil.Process(served.process.pid)
        assert timed_post(url)[0] == 200  # warm
        baseline = process.memory_info().rss / 2**20
        peak = baseline
        results: list[tuple[int, float, str]] = []
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
        with ThreadPoolExecutor(BURST) as pool, httpx.Client(timeout=120, limits=limits) as c:
            for _ in range(3):  # three waves, each 12x the limit
                results += list(pool.map(lambda _: timed_post(url, c), range(BURST)))
                peak = max(peak, process.memory_info().rss / 2**20)
            # Every slot held by the slower version, then a burst: refused before a slot frees.
            held = [pool.submit(timed_post, held_url, c) for _ in range(CAPACITY)]
            wait_until(lambda: in_flight(served.url) == CAPACITY, 30, "every slot held")
            shed = list(pool.map(lambda _: timed_post(url, c), range(BURST - CAPACITY)))
            answered_meanwhile = [f for f in held if f.done()]
            assert [f.result()[0] for f in held] == [200] * CAPACITY
        assert answered_meanwhile == [], "a slot freed before the burst was refused"
        assert [status for status, _, _ in shed] == [503] * len(shed)
        rejected = [r for r in results if r[0] == 503]
        accepted = [r for r in results if r[0] == 200]
        assert len(rejected) + len(accepted) == len(results), {r[0] for r in results}
        assert len(rejected) >= BURST, f"only {len(rejected)} of {len(results)} shed"
        assert accepted, "nothing was served during the bursts"
        assert all('"error"' in text and "limit" in text for _, _, text in rejected + shed)
        assert peak - baseline < 50, f"RSS grew {peak - baseline:.1f} MB under overload"
        wait_until(lambda: timed_post(url)[0] == 200, 10, "service after the burst")
        assert all(timed_post(url)[0] == 200 for _ in range(5))
        slowest = max(seconds for _, seconds, _ in rejected + shed)
        print(  # noqa: T201 - the figures for tests/RELIABILITY.md
            f"S15: {len(rejected)}/{len(results)} shed, slowest rejection {slowest * 1000:.0f} ms,"
            f" held-slot burst {len(shed)}/{len(shed)} shed, RSS +{peak - baseline:.1f} MB"
        )


def in_flight(url: str) -> float | None:
    """The server's ``modelfleet_requests_in_flight`` (admission's own count), from /metrics."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("modelfleet_requests_in_flight{"):
            return float(line.rsplit(" ", 1)[1])
    return None
