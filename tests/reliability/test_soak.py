"""S14 in the default suite: 45 s at 100 requests/s over 16 connections against a real server
(pinned to CPU 0, the client to CPU 1 where there are two): 0 errors and RSS growth over the
second half <= 50 MB. ``scripts/soak`` runs the 10-minute version. Deselect with -m 'not slow'."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .soak import pin_to, run_soak, soak_server

SECONDS = 45.0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_short_soak_has_no_errors_and_flat_memory(tmp_path: Path) -> None:
    affinity = os.sched_getaffinity(0)
    with soak_server(tmp_path, cpu=0) as server:
        pin_to(1)
        try:
            figures = run_soak(server.infer_url, server.process.pid, SECONDS)
        finally:
            os.sched_setaffinity(0, affinity)
    print(f"S14: {figures.summary()}")  # noqa: T201 - the figures for tests/RELIABILITY.md
    assert figures.requests == int(SECONDS * 100)
    assert figures.errors == 0, figures.error_samples
    assert figures.rss_second_half_growth_mb <= 50, figures.rss_samples_mb
