"""When to try a call again: exponential backoff with jitter, honouring ``Retry-After``.

Only ``InferenceServerError.retryable`` errors (503 / UNAVAILABLE, including a server that
does not answer the connection) are retried. tenacity would do this too, but the policy is a
dozen lines and the client's only dependency stays numpy.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from modelfleet_client.calls import Call
from modelfleet_client.errors import InferenceServerError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between attempts: ``base * 2**attempt`` capped at ``cap`` (seconds), half of it
    fixed and half random (so that clients that failed together do not retry together)."""

    retries: int = 3
    """Attempts after the first one."""
    base: float = 0.1
    cap: float = 5.0
    max_retry_after: float = 60.0
    """A server asking for a longer wait than this gets its error raised at once instead."""

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more, got {self.retries}")

    def delay(self, attempt: int, error: InferenceServerError) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (0-based); None: give up."""
        if not error.retryable or attempt >= self.retries:
            return None
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            return error.retry_after + random.uniform(0, self.base)
        step = min(self.cap, self.base * 2.0**attempt)
        return step / 2 + random.uniform(0, step / 2)


def run(send: Callable[[Any], Any], call: Call[T], backoff: Backoff, retry: bool) -> T:
    """``call.parse(send(call.request))``, tried again while ``backoff`` says so (never
    when ``retry`` is false)."""
    attempt = 0
    while True:
        try:
            return call.parse(send(call.request))
        except InferenceServerError as error:
            delay = backoff.delay(attempt, error) if retry else None
            if delay is None:
                raise
        time.sleep(delay)
        attempt += 1


async def arun(
    send: Callable[[Any], Awaitable[Any]], call: Call[T], backoff: Backoff, retry: bool
) -> T:
    """``run`` for coroutines: the waits are ``asyncio.sleep``, so other calls go on."""
    attempt = 0
    while True:
        try:
            return call.parse(await send(call.request))
        except InferenceServerError as error:
            delay = backoff.delay(attempt, error) if retry else None
            if delay is None:
                raise
        await asyncio.sleep(delay)
        attempt += 1
