"""Warm starts: ONNX Runtime's optimized graph, saved beside a cached version, loaded next time.

``onnx.OnnxModel.load`` calls ``create_session``. For a version served from the model cache
(``cache_dir``, with ``optimized_model_cache`` on), the first session created from it also
writes ONNX Runtime's optimized graph (``SessionOptions.optimized_model_filepath``) into
``entries/<key>.opt/<options>/``; later sessions, in this process or any other, load that graph
with graph optimisation off and skip the optimisation passes (``bench/warm_start.py``).

``<options>`` is a sha256 of what makes an optimized graph fit: the ONNX Runtime version, the
graph optimisation level, the execution providers, and the CPU (model name and feature flags:
at level ``all`` ONNX Runtime lays tensors out for the CPU's vector width and warns that such a
graph "should only be used in the same environment"; a cache on a volume can be mounted by
nodes with other CPUs). Thread counts do not change the graph. Initializers of 1 KiB or more are
saved to an external-data file beside the graph, so models over protobuf's 2 GB limit and
models with external data save too.

Integrity as for the cache's entries (``records.matches``): the graph's files are hashed when saved
(``digests.json``) and checked before each use; a graph that differs is removed and the session
is created from the (checked) original, saving a fresh graph. A graph is saved into a
staging folder and renamed into place, so a reader sees all of one or nothing; when two
processes save at once the first rename wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
from pathlib import Path
from typing import Literal

import onnxruntime as ort
from pydantic import ValidationError

from modelfleet_runtime.config import Settings
from modelfleet_runtime.storage.cache import OPTIMIZED_SUFFIX
from modelfleet_runtime.storage.locks import staging
from modelfleet_runtime.storage.records import Record, matches, record_of

log = logging.getLogger(__name__)

GraphCache = Literal["hit", "miss", "corrupt"]
GRAPH_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
DIGESTS_FILE = "digests.json"
_EXTERNAL_MIN_BYTES = 1024


def optimized_folder(model: Path, settings: Settings) -> Path | None:
    """Where the optimized graph of ``model`` for these settings lives, or None when warm
    starts do not apply (no cache, turned off, or a model outside the cache)."""
    cache = settings.cache_dir
    if cache is None or not settings.optimized_model_cache:
        return None
    entry = model.parent
    if not entry.is_relative_to(cache) or entry.parent.name != "entries":
        return None
    return entry.with_name(entry.name + OPTIMIZED_SUFFIX) / options_key(settings)


def options_key(settings: Settings) -> str:
    """The key of the session options an optimized graph was made with (module docstring)."""
    what = {
        "onnxruntime": ort.__version__,
        "graph_optimization": settings.graph_optimization,
        "providers": settings.execution_providers,
        "cpu": _cpu_identity(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def _cpu_identity() -> str:
    """The CPU's model name and feature flags (Linux), else what ``platform`` knows."""
    wanted = ("model name", "flags", "Features", "CPU part")
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    seen: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() in wanted:
            seen.setdefault(name.strip(), value.strip())
    if not seen:
        return f"{platform.machine()} {platform.processor()}"
    return json.dumps(seen, sort_keys=True)


def create_session(
    model: Path, options: ort.SessionOptions, settings: Settings
) -> tuple[ort.InferenceSession, GraphCache | None]:
    """A session for ``model``: from its saved optimized graph when there is an intact one
    (``hit``), else from ``model``, saving the graph (``miss``, or ``corrupt`` when a saved
    one differed from its digests). None: warm starts do not apply. Blocking."""
    providers = settings.execution_providers
    folder = optimized_folder(model, settings)
    if folder is None:
        return ort.InferenceSession(str(model), options, providers=providers), None
    result: GraphCache = "miss"
    if folder.is_dir():
        session = _load_saved(folder, options, providers, full=settings.cache_verify == "always")
        if session is not None:
            return session, "hit"
        shutil.rmtree(folder, ignore_errors=True)
        result = "corrupt"
    return _create_and_save(model, options, providers, folder), result


def _load_saved(
    folder: Path, options: ort.SessionOptions, providers: list[str], *, full: bool
) -> ort.InferenceSession | None:
    """A session from the saved graph, when it is intact and loads; else None."""
    if not _intact(folder, full=full):
        log.warning("the saved optimized graph in %s differs from its digests", folder)
        return None
    level = options.graph_optimization_level
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(folder / GRAPH_FILE), options, providers=providers)
    except Exception as exc:  # ONNX Runtime raises its own types; the original still loads
        log.warning("the saved optimized graph in %s does not load: %s", folder, exc)
        options.graph_optimization_level = level
        return None


def _create_and_save(
    model: Path, options: ort.SessionOptions, providers: list[str], folder: Path
) -> ort.InferenceSession:
    """A session from ``model`` that also saves its optimized graph as ``folder``."""
    try:
        with staging(folder.parent, "") as tmp:
            options.optimized_model_filepath = str(tmp / GRAPH_FILE)
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", DATA_FILE
            )
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes",
                str(_EXTERNAL_MIN_BYTES),
            )
            session = ort.InferenceSession(str(model), options, providers=providers)
            record = record_of(tmp, {})
            (tmp / DIGESTS_FILE).write_text(record.model_dump_json())
            try:
                tmp.rename(folder)
            except OSError:
                if not folder.is_dir():  # not a concurrent save that won: a real failure
                    raise
        return session
    except Exception as exc:  # the graph is a speed-up: a full disk must not fail the load
        log.warning("cannot save the optimized graph in %s (%s); loading without", folder, exc)
        options.optimized_model_filepath = ""
        return ort.InferenceSession(str(model), options, providers=providers)


def _intact(folder: Path, *, full: bool) -> bool:
    """Whether the saved graph's files are all there and match their recorded digests."""
    try:
        recorded = Record.model_validate_json((folder / DIGESTS_FILE).read_bytes())
        return matches(folder, recorded, full=full, exclude=frozenset({DIGESTS_FILE})) is not None
    except (OSError, ValidationError):
        return False
