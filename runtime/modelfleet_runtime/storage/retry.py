"""Bounded retries for storage calls: exponential backoff with jitter under one deadline.

``layout.py`` wraps every listing, and ``download.py`` every download part, in
``Retrier.call``. Only ``UnavailableError`` (network, 5xx, throttling) is retried; every other
StorageError raises at once, because another try cannot fix a wrong key or a missing object.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from .base import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and exc.retryable


class Retrier:
    """Retries transient failures until ``deadline`` seconds after construction.

    The wait before retry n is "equal jitter": half of ``min(cap, initial * 2**n)`` plus a
    random share of the other half, so waits grow steadily (no tight loop against a store
    that is down) yet callers that failed together do not retry in lockstep.
    """

    def __init__(self, *, initial: float, cap: float, deadline: float) -> None:
        self._initial = initial
        self._cap = cap
        self._deadline_at = time.monotonic() + deadline
        self._deadline = deadline

    def _wait(self, state: RetryCallState) -> float:
        ceiling: float = min(self._cap, self._initial * 2.0 ** (state.attempt_number - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))

    def _stop(self, state: RetryCallState) -> bool:
        # Stop before sleeping past the deadline rather than after: the whole call stays
        # within ``deadline`` plus one attempt.
        return time.monotonic() + (state.upcoming_sleep or 0.0) >= self._deadline_at

    def _before_sleep(self, state: RetryCallState, what: str) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "storage call failed, retrying in %.1f s (attempt %d, deadline %.0f s): %s",
            state.upcoming_sleep,
            state.attempt_number,
            self._deadline,
            exc if exc is not None else what,
        )

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` until it succeeds, fails for good, or the deadline passes; then
        raise its last error (its message already names the object and the reason)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=self._wait,
            stop=self._stop,
            before_sleep=lambda state: self._before_sleep(state, what),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await fn()
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
