"""A bounded background load: threads sending requests at a fixed rate, recording outcomes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Outcome:
    at: float
    status: int
    version: str | None
    error: str | None = None


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def versions(self) -> list[str | None]:
        return [o.version for o in sorted(self.outcomes, key=lambda o: o.at)]


@contextmanager
def steady_load(
    url: str, body: dict[str, Any], rate: float, max_seconds: float = 60, threads: int = 2
) -> Iterator[LoadResult]:
    """Send ``body`` to ``url`` at about ``rate`` requests/s until the block exits (or
    ``max_seconds`` pass, so a broken test cannot run forever)."""
    result = LoadResult()
    stop = threading.Event()
    lock = threading.Lock()
    interval = threads / rate

    def worker() -> None:
        deadline = time.monotonic() + max_seconds
        with httpx.Client(timeout=10) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                outcome = _one(client, url, body)
                with lock:
                    result.outcomes.append(outcome)
                stop.wait(interval)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        yield result
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=15)


def _one(client: httpx.Client, url: str, body: dict[str, Any]) -> Outcome:
    now = time.monotonic()
    try:
        answer = client.post(url, json=body)
    except httpx.TransportError as exc:
        return Outcome(now, 0, None, repr(exc))
    version = answer.json().get("model_version") if answer.status_code == 200 else None
    return Outcome(now, answer.status_code, version, None if version else answer.text)
