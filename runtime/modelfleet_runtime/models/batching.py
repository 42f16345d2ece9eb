"""Dynamic batching: many small inference requests become one run of the model.

``dataplane.DataPlane`` (when ``max_batch_size`` > 0) builds one ``DynamicBatcher`` per loaded
model version on its first request, if every input has a dynamic batch dimension, around its
worker-thread run; the first ``submit`` starts the collector, and the data plane ``close()``s
it, draining, when the registry retires the version and at shutdown.

This module holds the queue, the one collector task per batcher that forms the batches, their
timing and the rule for when one runs; which requests may share a batch, and how their rows
are joined and split back, is ``rows.py``. A request costs one future and a few list
operations, never a task of its own. A full queue raises ``QueueFullError`` at once (the server
answers 503) instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from typing import Protocol, TypeAlias, cast

from modelfleet_runtime.models.rows import (
    BatchingError,
    BatchKey,
    batch_key,
    concat_rows,
    split_rows,
)
from modelfleet_runtime.protocol import Arrays

log = logging.getLogger(__name__)

Tensors: TypeAlias = Arrays  # what run and submit take and return (protocol's tensors by name)
AsyncRun: TypeAlias = Callable[[Tensors], Awaitable[Tensors]]
SyncRun: TypeAlias = Callable[[Tensors], Tensors]


class QueueFullError(BatchingError):
    """The batch queue holds ``max_queue_size`` requests already: shed this one (503)."""


class BatcherClosedError(BatchingError):
    """The batcher is closing or closed (the model version is being unloaded): 503."""


class BatchObserver(Protocol):
    """Receives one call per batch run (``metrics.py`` turns it into histograms)."""

    def observe_batch(self, size: int, queue_seconds: float) -> None:
        """``size``: rows in the batch; ``queue_seconds``: how long its oldest request waited
        between ``submit`` and the run (an upper bound for every request in the batch)."""


class _Pending:
    """One queued request. ``__slots__``: thousands of these are made per second."""

    __slots__ = ("enqueued", "future", "inputs", "key", "rows")

    def __init__(
        self, inputs: Tensors, key: BatchKey, rows: int, future: asyncio.Future[Tensors], now: float
    ) -> None:
        self.inputs = inputs
        self.key = key
        self.rows = rows
        self.future = future
        self.enqueued = now


class DynamicBatcher:
    """Groups concurrent ``submit`` calls of compatible shapes into batched runs of ``run``.

    ``run`` takes and returns ``{name: array}`` with the batch along axis 0. A coroutine
    function is awaited on the event loop (run ONNX Runtime in a worker thread inside it); a
    plain function is called in ``executor`` (default: the loop's default executor).
    """

    def __init__(
        self,
        run: AsyncRun | SyncRun,
        *,
        max_batch_size: int,
        max_queue_delay_us: int = 500,
        preferred_batch_sizes: Iterable[int] = (),
        max_queue_size: int = 1024,
        max_concurrent_batches: int = 1,
        observer: BatchObserver | None = None,
        executor: Executor | None = None,
        held: Callable[[], int] | None = None,
    ) -> None:
        """``max_batch_size``: most rows per run (a request with more runs alone);
        ``max_queue_delay_us``: how long the oldest request may wait for others, in
        microseconds; ``preferred_batch_sizes``: row counts sent at once when reached, without
        waiting out the delay; ``max_queue_size``: requests waiting beyond which ``submit``
        raises ``QueueFullError``; ``max_concurrent_batches``: runs in flight at once (1 suits
        one CPU: the next batch fills while the current one runs); ``held``: how many requests
        the server holds now (admitted, not answered): when all of them are queued here, no
        other can join before the delay ends but a new arrival, so the batch runs at once
        (closed-loop clients would otherwise wait out every delay with the model idle);
        ``poke()`` when that count drops."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_queue_delay_us < 0:
            raise ValueError("max_queue_delay_us must not be negative")
        if max_queue_size < 1 or max_concurrent_batches < 1:
            raise ValueError("max_queue_size and max_concurrent_batches must be at least 1")
        preferred = frozenset(preferred_batch_sizes)
        if any(size < 1 or size > max_batch_size for size in preferred):
            raise ValueError("preferred_batch_sizes must lie between 1 and max_batch_size")
        self._run = run
        call = getattr(run, "__call__", None)  # noqa: B004 (an object with an async __call__)
        self._is_async = inspect.iscoroutinefunction(run) or inspect.iscoroutinefunction(call)
        self._executor = executor
        self.max_batch_size = max_batch_size
        self._delay = max_queue_delay_us / 1_000_000
        self._preferred = preferred
        self.max_queue_size = max_queue_size
        self._observer = observer
        self._held = held
        self._groups: dict[BatchKey, deque[_Pending]] = {}
        self._queued = 0
        self._solo_ids = itertools.count(1)
        self._wake: asyncio.Future[None] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(max_concurrent_batches)
        self._concurrent = max_concurrent_batches > 1
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def queued(self) -> int:
        """Requests waiting for a batch now (not counting those in a running batch)."""
        return self._queued

    def start(self) -> None:
        """Start the collector task on the running loop (``submit`` also starts it)."""
        if self._closing:
            raise BatcherClosedError("batcher is closed")
        if self._collector is None:
            self._collector = asyncio.get_running_loop().create_task(
                self._collect(), name="modelfleet-batcher"
            )

    async def submit(self, inputs: Tensors) -> Tensors:
        """Queue ``inputs`` for the next compatible batch; return this request's own rows of
        every output. Raises ``QueueFullError`` when the queue is full, ``BatcherClosedError``
        once closing began, and whatever ``run`` raised for the batch this request was in."""
        if self._collector is None:
            self.start()
        if self._closing:
            raise BatcherClosedError("batcher is closing")
        if self._queued >= self.max_queue_size:
            raise QueueFullError(f"batch queue is full ({self.max_queue_size} requests waiting)")
        key, rows = batch_key(inputs, self.max_batch_size, self._solo_ids)
        loop = asyncio.get_running_loop()
        item = _Pending(inputs, key, rows, loop.create_future(), loop.time())
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = group = deque()
        group.append(item)
        self._queued += 1
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        try:
            return await item.future
        except asyncio.CancelledError:
            self._forget(item)
            raise

    async def close(self, *, drain: bool = True) -> None:
        """Refuse new requests; with ``drain`` run every queued one first, else fail them with
        ``BatcherClosedError`` (a batch already running is cancelled too)."""
        self._closing = True
        if not drain:
            self._fail_queued(BatcherClosedError("batcher closed before this request ran"))
        self._notify()
        collector, self._collector = self._collector, None
        if collector is not None:
            if not drain:
                collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
        if not drain:
            for task in self._running:
                task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self._fail_queued(BatcherClosedError("batcher closed"))  # close() before start()

    # --- internals ---------------------------------------------------------------------------

    def _forget(self, item: _Pending) -> None:
        """A caller was cancelled while queued: free its place at once."""
        group = self._groups.get(item.key)
        if group is not None and item in group:
            group.remove(item)
            self._queued -= 1
            if not group:
                del self._groups[item.key]

    def _fail_queued(self, error: BaseException) -> None:
        for group in self._groups.values():
            for item in group:
                if not item.future.done():
                    item.future.set_exception(error)
        self._groups.clear()
        self._queued = 0

    def poke(self) -> None:
        """The server's ``held`` count dropped: run the queue now if it holds every request."""
        if self._holds_all():
            self._notify()

    def _holds_all(self) -> bool:
        """Every request the server holds waits here: none but a new arrival can join."""
        return self._held is not None and 0 < self._queued >= self._held()

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _take(self, group: deque[_Pending], now: float) -> int:
        """How many requests from the head of ``group`` to run now (0: keep waiting)."""
        head = group[0]
        if isinstance(head.key, int):
            return 1
        total = count = preferred = 0
        for item in group:
            if total + item.rows > self.max_batch_size:
                return count  # the next one does not fit: the batch is full
            total += item.rows
            count += 1
            if total == self.max_batch_size:
                return count
            if total in self._preferred:
                preferred = count
        if preferred:
            return preferred
        if self._closing or now - head.enqueued >= self._delay:
            return count
        if self._holds_all():
            return count  # waiting would only idle the model
        return 0

    def _next_batch(self, now: float) -> tuple[list[_Pending], float | None]:
        """The oldest ready batch, or ``([], when the oldest waiting request's delay ends)``."""
        deadline: float | None = None
        for key, group in sorted(self._groups.items(), key=lambda kv: kv[1][0].enqueued):
            count = self._take(group, now)
            if count:
                batch = [group.popleft() for _ in range(count)]
                self._queued -= count
                if not group:
                    del self._groups[key]
                return batch, None
            if deadline is None:
                deadline = group[0].enqueued + self._delay
        return [], deadline

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._concurrent:
                await self._slots.acquire()
            batch: list[_Pending] = []
            while not batch:
                batch, deadline = self._next_batch(loop.time())
                if batch:
                    break
                if self._closing and not self._groups:
                    return
                await self._sleep(loop, deadline)
            if self._concurrent:
                task = loop.create_task(self._run_batch(batch))
                self._running.add(task)
                task.add_done_callback(self._batch_done)
            else:
                await self._run_batch(batch)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _sleep(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        """Wait for a new request, ``close()`` or the deadline, without creating a task."""
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake
        timer = None if deadline is None else loop.call_at(deadline, _resolve, wake)
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _run_batch(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        rows = [item.rows for item in batch]
        if self._observer is not None:
            try:
                self._observer.observe_batch(sum(rows), loop.time() - batch[0].enqueued)
            except Exception:  # metrics must never stop the collector (and every request)
                log.exception("batch observer failed")
        try:
            inputs = batch[0].inputs if len(batch) == 1 else concat_rows(batch)
            outputs = await self._call(inputs)
            results = [outputs] if len(batch) == 1 else split_rows(outputs, rows)
        except asyncio.CancelledError:
            _fail(batch, BatcherClosedError("batcher closed while this request ran"))
            raise
        except Exception as error:  # every request of the batch sees the model's error
            _fail(batch, error)
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():  # its caller may have been cancelled
                item.future.set_result(result)

    async def _call(self, inputs: Tensors) -> Tensors:
        if self._is_async:
            return await cast(AsyncRun, self._run)(inputs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, cast(SyncRun, self._run), inputs)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(batch: list[_Pending], error: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(error)
