"""Steady-load soak (S14): a paced asyncio client, RSS sampling with psutil, and the figures.

Used by ``test_soak.py`` (a short run in the default suite) and by ``scripts/soak`` (the long
run). The server runs as a real ``modelfleet serve`` process, pinned to CPU 0 with ``taskset``
where the machine has two CPUs; the load generator pins itself to CPU 1.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.helpers import onnx_models
from tests.helpers.runtime import free_port, stop_process, wait_until

SIZES = 97
"""Distinct request bodies cycled through when batch sizes vary (a prime: no short period)."""


def bodies(max_batch: int) -> list[dict[str, Any]]:
    """Request bodies for the [batch, 4] model: one row each, or 1..``max_batch`` rows in a
    fixed pseudo-random order (S14's variant: a varying batch size is what grows ORT's arena)."""
    rng = random.Random(14)
    sizes = [1] if max_batch == 1 else [rng.randint(1, max_batch) for _ in range(SIZES)]
    return [
        {"inputs": [{"name": "input0", "shape": [n, 4], "datatype": "FP32", "data": [1.0] * 4 * n}]}
        for n in sizes
    ]


@dataclass
class Figures:
    """What one soak measured. RSS in MB; latencies in ms."""

    seconds: float
    rate: float
    connections: int
    max_batch: int = 1
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    rss_start_mb: float = 0.0
    rss_mid_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_max_mb: float = 0.0
    rss_second_half_growth_mb: float = 0.0
    rss_samples_mb: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.requests} requests in {self.seconds:.0f} s ({self.rate:g} rps target, "
            f"{self.connections} connections, batch 1-{self.max_batch}): {self.errors} errors; "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms; "
            f"RSS start {self.rss_start_mb:.1f} MB, mid {self.rss_mid_mb:.1f} MB, "
            f"end {self.rss_end_mb:.1f} MB, second-half growth "
            f"{self.rss_second_half_growth_mb:+.1f} MB"
        )


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def pin_to(cpu: int) -> None:
    """Pin the calling process to ``cpu`` when the machine has it (no-op elsewhere)."""
    if hasattr(os, "sched_setaffinity") and cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})


async def _drive(
    url: str, figures: Figures, latencies: list[float], payloads: list[dict[str, Any]]
) -> None:
    """``figures.rate`` requests/s over ``figures.connections`` connections, on a fixed
    schedule (request i is due at start + i/rate, with ``payloads[i % len]``), for
    ``figures.seconds``."""
    total = int(figures.seconds * figures.rate)
    limits = httpx.Limits(max_connections=figures.connections)
    start = time.monotonic()
    tickets = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in tickets:
            delay = start + i / figures.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing to the schedule, not waiting on a state
            sent = time.perf_counter()
            try:
                answer = await client.post(url, json=payloads[i % len(payloads)])
                ok = answer.status_code == 200
                problem = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                ok, problem = False, repr(exc)
            latencies.append((time.perf_counter() - sent) * 1000)
            figures.requests += 1
            if not ok:
                figures.errors += 1
                if len(figures.error_samples) < 10:
                    figures.error_samples.append(problem)

    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(figures.connections)))


async def _sample_rss(pid: int, every: float, samples: list[float], stop: asyncio.Event) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        samples.append(process.memory_info().rss / 2**20)
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
    samples.append(process.memory_info().rss / 2**20)


async def _soak(url: str, pid: int, figures: Figures, sample_every: float) -> None:
    latencies: list[float] = []
    samples: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(_sample_rss(pid, sample_every, samples, stop))
    try:
        await _drive(url, figures, latencies, bodies(figures.max_batch))
    finally:
        stop.set()
        await sampler
    latencies.sort()
    figures.p50_ms = _percentile(latencies, 0.50)
    figures.p99_ms = _percentile(latencies, 0.99)
    figures.max_ms = latencies[-1] if latencies else 0.0
    mid = len(samples) // 2
    figures.rss_samples_mb = [round(s, 1) for s in samples]
    figures.rss_start_mb, figures.rss_mid_mb = samples[0], samples[mid]
    figures.rss_end_mb, figures.rss_max_mb = samples[-1], max(samples)
    figures.rss_second_half_growth_mb = max(samples[mid:]) - samples[mid]


def run_soak(
    url: str,
    pid: int,
    seconds: float,
    rate: float = 100,
    connections: int = 16,
    max_batch: int = 1,
) -> Figures:
    """Drive ``url`` (an infer endpoint) and sample the RSS of process ``pid``."""
    figures = Figures(seconds=seconds, rate=rate, connections=connections, max_batch=max_batch)
    sample_every = 5.0 if seconds >= 120 else 1.0
    asyncio.run(_soak(url, pid, figures, sample_every))
    return figures


@dataclass
class SoakServer:
    process: subprocess.Popen[bytes]
    url: str
    infer_url: str
    log: Path


@contextmanager
def soak_server(workdir: Path, cpu: int = 0) -> Iterator[SoakServer]:
    """``modelfleet serve`` of a tiny [batch, 4] model, pinned to ``cpu`` if it exists."""
    repo = onnx_models.write_repository(workdir / "tiny", {1: onnx_models.add_constant(1.0)})
    port = free_port()
    command = [sys.executable, "-m", "modelfleet_runtime.cli", "serve", "--port", str(port)]
    command += ["--model-uri", str(repo), "--intra-op-threads", "1", "--inter-op-threads", "1"]
    command += ["--poll-interval", "0", "--log-level", "WARNING"]
    taskset = shutil.which("taskset")
    if taskset and cpu in os.sched_getaffinity(0) and len(os.sched_getaffinity(0)) > 1:
        command = [taskset, "-c", str(cpu), *command]
    env = {**os.environ, "MODELFLEET_MODEL_DIR": str(workdir / "cache")}
    log = workdir / "soak-server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _ready(url), 60, "soak server ready")
        assert process.poll() is None, log.read_text()
        yield SoakServer(process, url, f"{url}/v2/models/tiny/infer", log)
    finally:
        stop_process(process)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
