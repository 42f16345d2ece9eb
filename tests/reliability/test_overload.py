"""S15: above capacity the server sheds load at once. With a slow model (~0.1-0.3 s a request)
and ``--max-concurrency 4``, bursts of 48 concurrent requests get 503 ``{"error"}`` each
within 1 s, the admitted ones succeed, memory stays bounded, and normal service resumes
within 10 s of the burst ending."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from tests.helpers import onnx_models
from tests.helpers.runtime import serve_process, wait_until

ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
BURST = 48
CAPACITY = 4


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
    repo = onnx_models.write_repository(tmp_path / "slow", {1: onnx_models.slow()})
    args = ["--model-uri", str(repo), "--max-concurrency", str(CAPACITY)]
    args += ["--inference-threads", str(CAPACITY), "--intra-op-threads", "1"]
    args += ["--poll-interval", "0", "--log-level", "WARNING"]
    with serve_process(tmp_path, *args) as served:
        url = f"{served.url}/v2/models/slow/infer"
        process = psutil.Process(served.process.pid)
        assert timed_post(url)[0] == 200  # warm
        baseline = process.memory_info().rss / 2**20
        peak = baseline
        results: list[tuple[int, float, str]] = []
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
        with ThreadPoolExecutor(BURST) as pool, httpx.Client(timeout=60, limits=limits) as c:
            for _ in range(3):  # three waves, each 12x the limit
                results += list(pool.map(lambda _: timed_post(url, c), range(BURST)))
                peak = max(peak, process.memory_info().rss / 2**20)
        rejected = [r for r in results if r[0] == 503]
        accepted = [r for r in results if r[0] == 200]
        assert len(rejected) + len(accepted) == len(results), {r[0] for r in results}
        assert len(rejected) >= BURST, f"only {len(rejected)} of {len(results)} shed"
        assert accepted, "nothing was served during the bursts"
        assert all('"error"' in text and "limit" in text for _, _, text in rejected)
        slowest = max(seconds for _, seconds, _ in rejected)
        assert slowest < 1.0, f"a rejection took {slowest:.2f} s"
        assert peak - baseline < 50, f"RSS grew {peak - baseline:.1f} MB under overload"
        ended = time.monotonic()
        wait_until(lambda: timed_post(url)[0] == 200, 10, "service after the burst")
        assert all(timed_post(url)[0] == 200 for _ in range(5))
        assert time.monotonic() - ended < 10
        print(  # noqa: T201 - the figures for tests/RELIABILITY.md
            f"S15: {len(rejected)}/{len(results)} shed, slowest rejection {slowest * 1000:.0f} ms,"
            f" RSS +{peak - baseline:.1f} MB"
        )
