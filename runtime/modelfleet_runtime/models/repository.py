"""Keeps the registry in step with storage: loading, hot swaps, polling (the policy: policy.py).

``server.build`` hands ``ModelRepository.run`` to the app, whose lifespan starts it as a background
task, so the server is live at once and ready when the first version is loaded. Each ``sync`` lists
the versions storage holds, loads the ones the policy wants (fetch, verify, load, warm in a worker
thread; with tracing on, a ``load_version`` span holding ``fetch`` and ``load``), publishes
each, and only then retires versions the policy no longer wants. A version that
fails is recorded and not retried until its files change; a serving version is never retired unless
a wanted one serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from modelfleet_runtime.config import Settings
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.models.onnx import ModelLoadError, OnnxModel
from modelfleet_runtime.models.policy import select_versions
from modelfleet_runtime.models.registry import ModelRegistry
from modelfleet_runtime.startup import StartPhases
from modelfleet_runtime.storage.base import ModelSource, RemoteVersion, StorageError
from modelfleet_runtime.tracing import Tracer

log = logging.getLogger(__name__)

Loader = Callable[[str, int, Path, Settings], OnnxModel]
RETRY_WHILE_UNREADY = 5.0
"""Seconds between sync attempts while nothing serves and polling is off or slower."""


class ModelRepository:
    """Loads and swaps the versions of one model from one ``ModelSource``."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        source: ModelSource,
        metrics: Metrics,
        loader: Loader = OnnxModel.load,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.source = source
        self.metrics = metrics
        self.loader = loader
        self.tracer = tracer
        self._loaded: dict[int, str] = {}  # version -> fingerprint of the files it came from
        self._failed: dict[int, str] = {}  # version -> fingerprint that failed
        self._lock = asyncio.Lock()
        self._cleanups: set[asyncio.Future[None]] = set()
        self._outages = 0  # storage listings failed in a row

    async def run(self) -> None:
        """Sync now, then every ``poll_interval`` seconds (more often while nothing serves)."""
        while True:
            await self.sync()
            delay = self._next_delay()
            if delay is None:
                return
            await asyncio.sleep(delay)

    def _next_delay(self) -> float | None:
        """Seconds to the next sync; None once serving with polling off. While storage keeps
        failing the wait doubles (with jitter) up to ``retry_max_backoff``, so an outage
        that outlasts one sync's retries is not met with a burst every cycle."""
        interval = self.settings.poll_interval
        if self.registry.ready:
            return interval or None
        base = min(interval, RETRY_WHILE_UNREADY) if interval else RETRY_WHILE_UNREADY
        if not self._outages:
            return base
        ceiling = max(self.settings.retry_max_backoff, base)
        return min(base * 2.0**self._outages, ceiling) * random.uniform(0.5, 1.0)

    async def sync(self) -> None:
        """One pass: list, load what's wanted and new, then retire what's no longer wanted."""
        async with self._lock:
            try:
                listing = await self.source.list_versions()
            except StorageError as exc:
                self._outages = min(self._outages + 1, 16)
                self._storage_failed(exc)
                return
            self._outages = 0
            wanted = select_versions(listing, self.settings)
            self._note_missing(wanted - listing.keys())
            self._count(wanted)  # the ones about to load count as not ready while they load
            for number in sorted(wanted & listing.keys(), reverse=True):
                await self._ensure(listing[number])
            self._retire(wanted)
            self.registry.settle()
            self._count(wanted)

    def _count(self, wanted: set[int]) -> None:
        """Versions loaded, and versions wanted but not loaded (the alert on a version stuck
        not ready reads the second)."""
        name = self.registry.name
        self.metrics.versions_loaded.labels(name).set(len(self._loaded))
        self.metrics.versions_not_ready.labels(name).set(len(wanted - self._loaded.keys()))

    async def _ensure(self, remote: RemoteVersion) -> None:
        number, fingerprint = remote.number, remote.fingerprint
        if self._loaded.get(number) == fingerprint or self._failed.get(number) == fingerprint:
            return
        self.registry.mark_loading(number)
        started = time.perf_counter()
        phases = StartPhases()
        with self._span("load_version", number):
            try:
                with self._span("fetch", number):
                    path = await self.source.fetch(remote, phases)
            except StorageError as exc:
                self._load_failed(number, fingerprint, exc)
                return
            try:
                with self._span("load", number):
                    model = await asyncio.to_thread(
                        self.loader, self.registry.name, number, path, self.settings
                    )
            except ModelLoadError as exc:
                self.source.release(path)
                self._load_failed(number, fingerprint, exc)
                return
        if model.graph_cache is not None:
            self.metrics.optimized_cache.labels(self.registry.name, model.graph_cache).inc()
        previous = self.registry.versions.get(number)  # its files changed in storage
        self.registry.publish(model)
        if previous is not None and previous.path != model.path:
            self.source.release(previous.path)
        self._loaded[number] = fingerprint
        self._failed.pop(number, None)
        seconds = time.perf_counter() - started
        self.metrics.load_duration.labels(self.registry.name).observe(seconds)
        phases.seconds.update(load=model.load_seconds, warmup=model.warmup_seconds)
        self.metrics.record_start(self.registry.name, number, phases.seconds)
        log.info("version %d loaded and serving", number, extra={"model_version": number})

    def _span(self, name: str, number: int) -> AbstractContextManager[Any]:
        """A span (tracing on) around one step of loading version ``number``; a failure
        leaves it with the exception and an error status."""
        if self.tracer is None:
            return contextlib.nullcontext()
        return self.tracer.span(name, {"modelfleet.version": number})

    def _retire(self, wanted: set[int]) -> None:
        # Availability first: old versions go only once a wanted one serves.
        if not wanted & self._loaded.keys():
            return
        for number in sorted(self._loaded.keys() - wanted):
            model = self.registry.versions.get(number)
            self.registry.retire(number)
            del self._loaded[number]
            self.metrics.forget_start(self.registry.name, number)
            log.info("version %d retired", number, extra={"model_version": number})
            if model is not None:
                self.source.release(model.path)
                self._remove_files(model.path.parent)

    def _remove_files(self, folder: Path) -> None:
        """Free the disk a retired version used (its session is already in memory, and
        in-flight requests hold the session, not the files)."""
        cache = self.settings.cache_dir
        if not folder.is_relative_to(self.settings.model_dir):
            return  # never touch a user's own files
        if cache is not None and folder.is_relative_to(cache):
            return  # the cache's to evict, when no process holds it any more
        task = asyncio.ensure_future(asyncio.to_thread(shutil.rmtree, folder, True))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _load_failed(self, number: int, fingerprint: str, exc: Exception) -> None:
        reason = getattr(exc, "reason", type(exc).__name__)
        self.registry.mark_failed(number, reason, str(exc))
        if not getattr(exc, "retryable", False):  # a flaky network gets another try next sync
            self._failed[number] = fingerprint
        self.metrics.load_failures.labels(self.registry.name, str(number), reason).inc()
        log.error(
            "version %d failed to load: %s: %s", number, reason, exc,
            extra={"model_version": number},
        )  # fmt: skip

    def _storage_failed(self, exc: StorageError) -> None:
        message = f"{exc.reason}: {exc}"
        if not self.registry.ready:
            self.registry.problem = message
        self.metrics.load_failures.labels(self.registry.name, "", exc.reason).inc()
        log.error("cannot list model versions in storage: %s", message)

    def _note_missing(self, missing: set[int]) -> None:
        for number in sorted(missing):
            self.registry.mark_failed(number, "NotFound", f"storage has no version {number}")
