"""One loaded model version: an ONNX Runtime session and its signature.

The model repository creates these (in a worker thread: session creation holds the GIL and
can take seconds) and the data plane calls ``run`` in worker threads (ONNX Runtime releases
the GIL inside ``run``). Everything per-model that a request needs is computed once here.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modelfleet_runtime.config import Settings
from modelfleet_runtime.models import warm
from modelfleet_runtime.protocol import DATATYPES, ONNX_TYPES, TensorSpec

_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


WARM_UP_BUDGET = 0.05
"""Seconds of warm-up runs after which no more are made (``OnnxModel.warm_up``)."""

_EXTERNAL_DATA_HINT = (
    " (the model keeps its weights in external-data files, which did not come with it: a URI"
    " that names one .onnx file brings that file only; give the folder that holds the model"
    " and its data files, or a repository pushed with 'modelfleet models push')"
)
"""Added to ONNX Runtime's message when a model's external data is missing."""

_ONE: dict[str, Any] = {"BOOL": True, "BYTES": ""}
"""Example values of the datatypes that take no number (``OnnxModel.example_inputs``)."""


class ModelLoadError(Exception):
    """The file is not a model ONNX Runtime can load, or it failed its warm-up run."""

    reason = "ModelLoadFailed"


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = _OPTIMIZATION[settings.graph_optimization]
    if not settings.prepack_weights:
        options.add_session_config_entry("session.disable_prepacking", "1")
    options.log_severity_level = 3  # ONNX Runtime's own warnings go to stderr otherwise
    return options


SessionRun = Callable[[Sequence[str], Mapping[str, Any], Any], list[Any]]


def direct_run(session: ort.InferenceSession) -> SessionRun:
    """The session's C++ ``run``, where ONNX Runtime's Python ``InferenceSession.run`` adds only
    checks the data plane has made already: that no required input is missing (every request
    passes ``signature.check_inputs``, which wants every input), that no OrtValue belongs to
    another session (we pass numpy arrays) and that WebGPU graph capture is off. It also
    catches a provider's failure (``EPFail``) and retries once on the CPU provider: nothing to
    retry on for a session with only the CPU provider, so only those sessions take the C++
    ``run``, and every other keeps the public one. Why: on MLP-small those checks are 8 of
    43 µs per call (one thread, in a loop; bench/PROFILE.md, "Round 2, third pass")."""
    inner = getattr(session, "_sess", None)
    if inner is None or session.get_providers() != ["CPUExecutionProvider"]:
        return session.run  # type: ignore[no-any-return]
    return inner.run  # type: ignore[no-any-return]


def _spec(node: Any) -> TensorSpec:
    datatype = ONNX_TYPES.get(node.type)
    if datatype is None:
        raise ModelLoadError(f"'{node.name}' has type {node.type}, which this server cannot serve")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in node.shape)
    return TensorSpec(node.name, datatype, shape)


@dataclass(frozen=True)
class OnnxModel:
    """A ready-to-run model version."""

    name: str
    version: int
    path: Path
    session: ort.InferenceSession
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    warm_run_seconds: float = math.inf
    """Median time of the warm-up runs: how the data plane decides where to run it."""
    load_seconds: float = 0.0
    """How long creating the session (and reading the signature) took."""
    warmup_seconds: float = 0.0
    """How long the warm-up took, all runs."""
    graph_cache: warm.GraphCache | None = None
    """Whether the session came from a saved optimized graph (``hit``) or saved one (``miss``,
    ``corrupt``); None when warm starts do not apply (``models/warm.py``)."""
    _run: SessionRun = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_run", direct_run(self.session))

    @classmethod
    def load(cls, name: str, version: int, path: Path, settings: Settings) -> OnnxModel:
        """Create the session, read the signature and run one warm-up inference. Blocking."""
        started = time.perf_counter()
        try:
            session, graph_cache = warm.create_session(path, session_options(settings), settings)
        except Exception as exc:  # ONNX Runtime raises its own exception types and RuntimeError
            hint = _EXTERNAL_DATA_HINT if "External data path does not exist" in str(exc) else ""
            raise ModelLoadError(
                f"ONNX Runtime cannot load version {version}: {exc}{hint}"
            ) from None
        inputs = {node.name: _spec(node) for node in session.get_inputs()}
        outputs = {node.name: _spec(node) for node in session.get_outputs()}
        model = cls(name, version, path, session, inputs, outputs, graph_cache=graph_cache)
        loaded = time.perf_counter()
        warm_run = model.warm_up()
        return replace(
            model,
            warm_run_seconds=warm_run,
            load_seconds=loaded - started,
            warmup_seconds=time.perf_counter() - loaded,
        )

    def warm_up(self, runs: int = 5, budget: float = WARM_UP_BUDGET) -> float:
        """Inference on zeros (dynamic dimensions as 1), so the first request is not slow and
        a model that loads but cannot run never replaces one that can. Returns the median
        time of the runs after the first, in seconds. Stops after the run that brings the
        warm-up past ``budget`` seconds: the runs after the first only tell how fast the
        model runs, and one that slow is far from the sub-millisecond models that run inline
        (``inline_run_max_us``), while each more run of a large model delays readiness."""
        feeds = {
            spec.name: np.zeros(tuple(d or 1 for d in spec.shape), dtype=DATATYPES[spec.datatype])
            for spec in self.inputs.values()
        }
        for spec in self.inputs.values():
            if spec.datatype == "BYTES":
                feeds[spec.name] = np.full(tuple(d or 1 for d in spec.shape), "", dtype=object)
        timings = []
        try:
            for _ in range(runs):
                started = time.perf_counter()
                self._run(list(self.outputs), feeds, None)  # as requests run it
                timings.append(time.perf_counter() - started)
                if sum(timings) > budget:
                    break
        except Exception as exc:
            raise ModelLoadError(f"version {self.version} failed its warm-up run: {exc}") from None
        return statistics.median(timings[1:] or timings)

    def run(
        self, inputs: dict[str, np.ndarray[Any, Any]], outputs: list[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run inference (blocking; releases the GIL). Returns outputs by name, in order."""
        names = outputs if outputs is not None else list(self.outputs)
        results = self._run(names, inputs, None)
        return dict(zip(names, results, strict=True))

    def example_inputs(self) -> list[dict[str, Any]]:
        """Request inputs this version accepts (the start-up announcement's curl line, the
        examples in /docs): its ``modelfleet.example_input`` metadata, else ones ("" for
        BYTES) with dynamic dimensions as 1."""
        meta = self.session.get_modelmeta().custom_metadata_map.get("modelfleet.example_input")
        examples: dict[str, Any] = json.loads(meta) if meta else {}
        inputs = []
        for spec in self.inputs.values():
            data = examples.get(spec.name)
            if data is None:
                shape = [d or 1 for d in spec.shape]
                data = [_ONE.get(spec.datatype, 1)] * math.prod(shape)
            else:
                shape = list(np.asarray(data).shape)
            entry = {"name": spec.name, "shape": shape, "datatype": spec.datatype, "data": data}
            inputs.append(entry)
        return inputs

    def metadata(self) -> dict[str, Any]:
        """The Open Inference Protocol's model metadata."""
        return {
            "name": self.name,
            "versions": [str(self.version)],
            "platform": "onnxruntime_onnx",
            "inputs": [spec.wire() for spec in self.inputs.values()],
            "outputs": [spec.wire() for spec in self.outputs.values()],
        }
