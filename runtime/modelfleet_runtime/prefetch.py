"""Starts the first download before the server's heavy imports, so the two overlap.

A cold ``modelfleet serve`` spends a second or more importing the web stack, gRPC, numpy and
ONNX Runtime before uvicorn starts the model repository. ``cli.serve_command`` therefore makes
a ``Prefetch`` as soon as the settings are parsed: a thread with its own event loop imports
only the storage code, opens the model's source, lists it and fetches the versions the policy
wants, while the main thread goes on importing and starting the server. The repository gets
``Prefetch.source()``, a ``ModelSource`` whose first listing and whose fetches of the listed
versions are the thread's results (errors included: a failure there is reported exactly as
the repository's own call would have reported it); every later call goes to the real source.
Nothing is verified twice and nothing is skipped: the thread runs the ordinary fetch.

Each version the thread fetched it then loads too (``OnnxModel.load``: the session, its
signature, the warm-up), and the repository's loader (``Prefetch.load``) takes that model
instead of loading the same file again. ONNX Runtime releases the GIL while it creates a
session, so a large model's session (a second or more for 1 GB, most of it pre-packing the
weights) is made while the main thread is still importing the web stack, not after it. A load
that fails is the repository's failure, reported as its own load would have been.

This module imports nothing heavy at import time (the storage code and the model's scheme
client, botocore for s3://, are the thread's first job; ONNX Runtime its first load).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import Future, wait
from pathlib import Path
from typing import TYPE_CHECKING

from modelfleet_runtime.config import Settings
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.models.policy import select_versions
from modelfleet_runtime.startup import StartPhases

if TYPE_CHECKING:
    from modelfleet_runtime.models.onnx import OnnxModel
    from modelfleet_runtime.storage.base import ModelSource, RemoteVersion

Fetched = tuple[Path, StartPhases]


class Prefetch:
    """The first listing and fetches of one model, running in a thread from ``start()``."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self.metrics = metrics
        """Where the source reports (the server's own ``Metrics``)."""
        self._opened: Future[ModelSource] = Future()
        self._listing: Future[dict[int, RemoteVersion]] = Future()
        self._fetches: dict[tuple[int, str], Future[Fetched]] = {}
        self._loads: dict[tuple[str, int, Path], Future[OnnxModel]] = {}
        self._lock = threading.Lock()
        # The thread runs in a copy of the caller's context: its log lines carry the served
        # model (``logs.model_name``) like the server's own.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name="modelfleet-prefetch",
            daemon=True,
        )

    def start(self) -> Prefetch:
        """Start the thread and wait until it has imported the storage code and opened the
        source (alone, that import runs at full speed; the GIL would otherwise share it with
        the caller's imports); the listing and the download then start while the caller goes
        on importing."""
        self._thread.start()
        wait([self._opened])
        return self

    def _run(self) -> None:
        try:
            from modelfleet_runtime.storage import open_source

            source = open_source(self._settings, self.metrics)
        except BaseException as exc:  # handed to the main thread, which reports it
            self._opened.set_exception(exc)
            return
        self._opened.set_result(source)
        asyncio.run(self._fetch_wanted(source))

    async def _fetch_wanted(self, source: ModelSource) -> None:
        # A future the repository gave up on (its task was cancelled) is skipped.
        if not self._listing.set_running_or_notify_cancel():
            return
        try:
            listing = await source.list_versions()
        except Exception as exc:
            self._listing.set_exception(exc)
            return
        wanted = sorted(select_versions(listing, self._settings) & listing.keys(), reverse=True)
        futures: list[tuple[int, Future[Fetched]]] = [(number, Future()) for number in wanted]
        with self._lock:  # every fetch is known before anyone can see the listing
            for number, future in futures:
                self._fetches[number, listing[number].fingerprint] = future
        self._listing.set_result(listing)
        for number, future in futures:  # newest first, one at a time, as the repository loads
            if not future.set_running_or_notify_cancel():
                continue
            phases = StartPhases()
            try:
                path = await source.fetch(listing[number], phases)
            except Exception as exc:
                future.set_exception(exc)
                continue
            load: Future[OnnxModel] = Future()
            with self._lock:  # known before the repository can ask for it
                self._loads[self._settings.model_name, number, path] = load
            future.set_result((path, phases))
            # Blocking, on purpose: this thread's loop has nothing else to run, and the next
            # fetch waits as it would in the repository (fetch, load, then the next version).
            self._load(number, path, load)

    def _load(self, number: int, path: Path, load: Future[OnnxModel]) -> None:
        if not load.set_running_or_notify_cancel():
            return
        try:
            from modelfleet_runtime.models.onnx import OnnxModel

            load.set_result(OnnxModel.load(self._settings.model_name, number, path, self._settings))
        except BaseException as exc:  # the repository's to report (ModelLoadError and all)
            load.set_exception(exc)

    def load(self, name: str, version: int, path: Path, settings: Settings) -> OnnxModel:
        """The repository's loader (``models.repository.Loader``): the thread's load of this
        very file, waited for, at most once; any other load is ``OnnxModel.load``'s."""
        with self._lock:
            early = self._loads.pop((name, version, path), None)
        if early is None or settings is not self._settings:
            from modelfleet_runtime.models.onnx import OnnxModel

            return OnnxModel.load(name, version, path, settings)
        return early.result()

    def source(self) -> ModelSource:
        """The source for the repository; raises what ``storage.open_source`` raised (a
        refused or malformed URI)."""
        return PrefetchedSource(self._opened.result(), self)

    def listing(self) -> Future[dict[int, RemoteVersion]]:
        return self._listing

    def take(self, version: RemoteVersion) -> Future[Fetched] | None:
        """The thread's fetch of exactly ``version`` (same files), at most once."""
        with self._lock:
            return self._fetches.pop((version.number, version.fingerprint), None)


class PrefetchedSource:
    """A ``ModelSource`` that answers with ``Prefetch``'s results first, then ``source``."""

    def __init__(self, source: ModelSource, prefetch: Prefetch) -> None:
        self.uri = source.uri
        self._source = source
        self._prefetch = prefetch
        self._listed = False

    async def list_versions(self) -> dict[int, RemoteVersion]:
        if self._listed:
            return await self._source.list_versions()
        self._listed = True
        return await asyncio.wrap_future(self._prefetch.listing())

    async def fetch(self, version: RemoteVersion, phases: StartPhases | None = None) -> Path:
        early = self._prefetch.take(version)
        if early is None:
            return await self._source.fetch(version, phases)
        path, found = await asyncio.wrap_future(early)
        if phases is not None:
            phases.seconds.update(found.seconds)
        return path

    def release(self, model: Path) -> None:
        self._source.release(model)
