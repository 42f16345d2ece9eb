"""S14 in the default suite: 100 requests/s over 16 connections against a real server (pinned
to CPU 0, the client to CPU 1 where there are two), 45 s of batch 1 and 20 s of batch sizes
varying from 1 to 64: 0 errors and RSS growth over the second half <= 50 MB. ``scripts/soak``
runs the 10-minute versions. Deselect with -m 'not slow'."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .soak import pin_to, run_soak, soak_server


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("seconds", "max_batch"), [(45.0, 1), (20.0, 64)], ids=["steady", "varying"]
)
def test_short_soak_has_no_errors_and_flat_memory(
    tmp_path: Path, seconds: float, max_batch: int
) -> None:
    affinity = os.sched_getaffinity(0)
    with soak_server(tmp_path, cpu=0) as server:
        pin_to(1)
        try:
            figures = run_soak(server.infer_url, server.process.pid, seconds, max_batch=max_batch)
        finally:
            os.sched_setaffinity(0, affinity)
    print(f"S14: {figures.summary()}")  # noqa: T201 - the figures for tests/RELIABILITY.md
    assert figures.requests == int(seconds * 100)
    assert figures.errors == 0, figures.error_samples
    assert figures.rss_second_half_growth_mb <= 50, figures.rss_samples_mb
