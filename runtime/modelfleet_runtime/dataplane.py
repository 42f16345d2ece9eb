"""The transport-neutral core: health, metadata and inference on decoded values.

``fastpath.py`` (HTTP inference), ``app.py`` (the other HTTP routes) and ``grpc_api.py`` turn
their requests into calls here and the results back into their own answers; nothing here knows
about HTTP or gRPC. Every inference request, whatever its transport, goes through one envelope,
``DataPlane.handle``: admission, model and version lookup, the request id in the log context,
error classification (``classify``: the one place a failure becomes a status, a message and a
log line) and the request metrics. Inference checks a request against the model's signature
before anything runs, then runs it inline, in a worker thread or through the model's dynamic
batcher.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from modelfleet_runtime import __version__, logs
from modelfleet_runtime.config import Settings
from modelfleet_runtime.errors import (
    BadRequestError,
    InferenceError,
    ModelNotReadyError,
    OverloadedError,
    ServingError,
    ShuttingDownError,
)
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.models.batching import BatcherClosedError, DynamicBatcher, QueueFullError
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.models.registry import ModelRegistry
from modelfleet_runtime.protocol import Arrays, InferRequest, InferResponse
from modelfleet_runtime.signature import check_inputs, check_outputs
from modelfleet_runtime.tracing import RequestTrace, Tracer

log = logging.getLogger(__name__)

Runner = Callable[[OnnxModel, Arrays, list[str] | None], Awaitable[Arrays]]
T = TypeVar("T")

EXTENSIONS = ["binary_tensor_data", "model_repository"]


def parse_version(raw: str | None) -> int | None:
    """A version as a path segment or protocol field carries it: positive, no leading zero,
    else 400. Empty or None: the default version."""
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or raw.startswith("0"):  # "¹".isdigit()
        raise BadRequestError(f"model version must be a positive integer, got {raw!r}")
    return int(raw)


def classify(exc: BaseException, what: str) -> tuple[int, str]:
    """The status and message a failed request answers with, logged once: a client's mistake
    (4xx) at info, a 503 (not loaded, overloaded, draining) as a warning, anything else (a
    model that failed to run, a bug) as an error with its traceback."""
    if isinstance(exc, ServingError):
        status, message = exc.status_code, exc.message
        if status < 500:
            log.info("%s refused (%d): %s", what, status, message)
        elif status == 503:
            log.warning("%s unavailable: %s", what, message)
        else:
            log.error("%s failed (%d): %s", what, status, message, exc_info=exc)
        return status, message
    log.error("%s failed: unhandled %s", what, type(exc).__name__, exc_info=exc)
    return 500, f"internal error: {type(exc).__name__}"


def _log_request(sampled: bool, protocol: str, seconds: float) -> None:
    """The line of an answered request, with its request id and trace id from the log
    context: at INFO for a request in a trace its caller sampled (the traces someone will
    look at), else at DEBUG. A line for every request at INFO would cost a small model's
    requests a good part of their CPU (bench/RESULTS.md, "Traces"). The caller checks the
    level first: on the hot path, a call less."""
    ms = seconds * 1e3
    log.log(
        logging.INFO if sampled else logging.DEBUG,
        "%s inference request answered 200 in %.2f ms", protocol, ms,
        extra={"protocol": protocol, "status": 200, "duration_ms": round(ms, 3)},
    )  # fmt: skip


@dataclass(slots=True)
class Outcome(Generic[T]):
    """How one request through ``DataPlane.handle`` ended: ``value`` (status 200) or
    ``status`` and ``error``, the message of the ``{"error": ...}`` body or gRPC status."""

    value: T | None = None
    status: int = 200
    error: str = ""


class DataPlane:
    """Health, metadata and inference for the models in ``registry``."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics if metrics is not None else Metrics()
        self.tracer = tracer  # None: tracing off, and no OpenTelemetry call on any request
        self._ids = itertools.count(1)  # request ids without an os.urandom call each
        self.draining = False
        self.in_flight = 0
        # Created at start, so the alert on shed requests sees a series from zero.
        self._shed = {
            reason: self.metrics.shed.labels(registry.name, reason)
            for reason in ("concurrency", "queue")
        }
        self._executor = ThreadPoolExecutor(
            settings.inference_threads, thread_name_prefix="inference"
        )
        self._batchers: dict[int, tuple[OnnxModel, DynamicBatcher]] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self.runner: Runner = self._run_direct
        if settings.max_batch_size > 0:
            self.runner = self._run_batched
            registry.on_retire.append(self._release_batcher)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not self.draining and self.registry.ready

    def model_ready(self, name: str, version: int | None = None) -> bool:
        """Whether the model (version) serves; 404 for one that does not exist."""
        try:
            self.registry.get(name, version)
        except ModelNotReadyError:
            return False
        return not self.draining

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelfleet", "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: int | None = None) -> dict[str, Any]:
        metadata = self.registry.get(name, version).metadata()
        if version is None:
            metadata["versions"] = [str(v) for v in sorted(self.registry.versions)]
        metadata["version_status"] = [s.wire() for s in self.registry.statuses()]
        return metadata

    def repository_index(self) -> list[dict[str, str]]:
        return [{"name": self.registry.name} | s.wire() for s in self.registry.statuses()]

    def model(self, name: str, version: int | None = None) -> OnnxModel:
        """The model version a request goes to: 404 if unknown, 503 if not loaded."""
        return self.registry.get(name, version)

    async def handle(
        self,
        protocol: str,
        name: str,
        version: str | None,
        work: Callable[[OnnxModel], Awaitable[T]],
        *,
        request_id: str | None = None,
        authorize: Callable[[], None] | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> Outcome[T]:
        """One inference request, for every transport: ``authorize``, admission, the model
        and version lookup, then ``work(model)`` (the transport's decode, infer, encode), with
        the request id (the client's, else a number of ours; ``adopt_request_id`` takes one
        found in the body) and the trace id (of a valid ``traceparent``, or of our span while
        tracing is on) in the log context, every failure classified, and the request counted
        and logged (``_log_request``). The transport turns the ``Outcome`` into its own
        answer."""
        started = time.perf_counter()
        label = name if name == self.registry.name else "unknown"
        token = logs.request_id.set(request_id or f"{next(self._ids):016x}")
        trace = None
        if traceparent is not None or self.tracer is not None:
            trace = RequestTrace.begin(self.tracer, protocol, name, traceparent, tracestate)
        status, served = 499, ""  # 499 until answered: the caller went away (cancelled)
        admitted = False
        try:
            if authorize is not None:
                authorize()
            self.admit()
            admitted = True
            model = self.model(name, parse_version(version))
            served = str(model.version)
            outcome: Outcome[T] = Outcome(await work(model))
            status = 200
        except Exception as exc:
            status, message = classify(exc, f"{protocol} inference request")
            outcome = Outcome(None, status, message)
        finally:
            if admitted:
                self.in_flight -= 1
                if self._batchers:  # one fewer held: a queue may now hold every request
                    self._poke_batchers()
            seconds = time.perf_counter() - started
            sampled = trace is not None and trace.sampled
            # A failure has its one line already, from classify.
            if status == 200 and log.isEnabledFor(logging.INFO if sampled else logging.DEBUG):
                _log_request(sampled, protocol, seconds)
            if trace is not None:
                trace.end(self.tracer, status, served)
            logs.request_id.reset(token)
        self.metrics.observe_request(label, served, protocol, status, seconds)
        return outcome

    @staticmethod
    def adopt_request_id(request_id: str | None) -> None:
        """Log the rest of the request under the client's own id (an HTTP body's ``id``)."""
        if request_id:
            logs.request_id.set(request_id)

    def admit(self) -> None:
        """Admission control: shed load at once (503) rather than queue without bound. An
        admitted request counts in ``in_flight`` until ``handle`` takes it off (not a context
        manager: contextlib's generator costs 1.2 µs more per request)."""
        if self.draining:
            raise ShuttingDownError()
        if self.in_flight >= self.settings.max_concurrency:
            self._shed["concurrency"].inc()
            raise OverloadedError(
                f"server is at its limit of {self.settings.max_concurrency} requests in flight"
            )
        self.in_flight += 1

    async def infer(self, model: OnnxModel, request: InferRequest) -> InferResponse:
        """Validate one request against the model's signature, then run it."""
        check_inputs(model, request.inputs)
        check_outputs(model, request.outputs)
        # No output named ([]) means every output, as a gRPC request with none listed.
        outputs = await self.runner(model, request.inputs, request.outputs or None)
        return InferResponse(
            model_name=model.name,
            model_version=str(model.version),
            outputs=outputs,
            id=request.id,
        )

    async def predict(self, model: OnnxModel, inputs: Arrays) -> Arrays:
        """Validate inputs and run with every output (the V1 path)."""
        check_inputs(model, inputs)
        return await self.runner(model, inputs, None)

    async def _run_direct(
        self, model: OnnxModel, inputs: Arrays, outputs: list[str] | None
    ) -> Arrays:
        """Unbatched: on the event loop when the model runs in microseconds (the thread hop
        and its GIL hand-offs cost more than the run), else in a worker thread."""
        if model.warm_run_seconds * 1e6 > self.settings.inline_run_max_us:
            return await self._run_in_thread(model, inputs, outputs)
        try:
            return model.run(inputs, outputs)
        except Exception as exc:  # ONNX Runtime's own error types: a failure inside the model
            raise InferenceError(f"model '{model.name}' failed to run: {exc}") from exc

    async def _run_in_thread(
        self, model: OnnxModel, inputs: Arrays, outputs: list[str] | None
    ) -> Arrays:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, model.run, inputs, outputs)
        except Exception as exc:  # ONNX Runtime's own error types: a failure inside the model
            raise InferenceError(f"model '{model.name}' failed to run: {exc}") from exc

    async def _run_batched(
        self, model: OnnxModel, inputs: Arrays, outputs: list[str] | None
    ) -> Arrays:
        """Through the model's dynamic batcher, when every input has a dynamic batch dim."""
        entry = self._batchers.get(id(model))
        if entry is None:
            if not all(spec.shape and spec.shape[0] is None for spec in model.inputs.values()):
                return await self._run_direct(model, inputs, outputs)
            entry = self._batchers[id(model)] = (model, self._new_batcher(model))
        try:
            result = await entry[1].submit(inputs)
        except QueueFullError as exc:
            self._shed["queue"].inc()
            raise OverloadedError(str(exc)) from None
        except BatcherClosedError:
            raise ModelNotReadyError(f"version {model.version} is being unloaded") from None
        return result if outputs is None else {name: result[name] for name in outputs}

    def _poke_batchers(self) -> None:
        for _, batcher in self._batchers.values():
            batcher.poke()

    def _new_batcher(self, model: OnnxModel) -> DynamicBatcher:
        async def run_all(inputs: Arrays) -> Arrays:
            return await self._run_in_thread(model, inputs, None)

        s = self.settings
        return DynamicBatcher(
            run_all,
            max_batch_size=s.max_batch_size,
            max_queue_delay_us=s.max_queue_delay_us,
            preferred_batch_sizes=s.preferred_batch_sizes,
            max_queue_size=s.max_queue_size,
            observer=_BatchMetrics(self.metrics, model.name),
            held=lambda: self.in_flight,
        )

    def _release_batcher(self, model: OnnxModel) -> None:
        entry = self._batchers.pop(id(model), None)
        if entry is not None:
            task = asyncio.ensure_future(entry[1].close(drain=True))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Drain the batchers, then stop the inference threads and the tracer."""
        for _, batcher in list(self._batchers.values()):
            await batcher.close(drain=True)
        self._batchers.clear()
        self.close()
        if self.tracer is not None:  # export the spans still buffered
            await asyncio.to_thread(self.tracer.shutdown)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)


class _BatchMetrics:
    """The batcher's observer: batch sizes and queue times into the model's histograms."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._size = metrics.batch_size.labels(model)
        self._queue = metrics.batch_queue.labels(model)

    def observe_batch(self, size: int, queue_seconds: float) -> None:
        self._size.observe(size)
        self._queue.observe(queue_seconds)
