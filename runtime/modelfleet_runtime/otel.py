"""OpenTelemetry spans for fetch, load and infer, exported over OTLP: ``--tracing``.

``tracing.start`` imports this module only when tracing is on (the ``otel`` extra, which the
runtime image installs). Everything else is OpenTelemetry's own configuration, read by its SDK
from the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``,
default http://localhost:4317), ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME`` (default
here: ``modelfleet``), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` (default
``parentbased_always_on``: a caller's sampling decision is kept), ``OTEL_BSP_*`` (the batch
processor's delay and queue). ``OTEL_TRACES_EXPORTER`` picks the exporters as the SDK's own
auto-configuration does: ``otlp`` (the default; gRPC, or the OTLP/HTTP exporter if installed
and ``OTEL_EXPORTER_OTLP_PROTOCOL`` is ``http/protobuf``), ``console``, ``none``, or any
installed exporter's entry point name. The provider is the runtime's own, not the global one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from modelfleet_runtime import __version__
from modelfleet_runtime.tracing import TraceParent, TracingUnavailableError

OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


def exporter_names() -> list[str]:
    """The trace exporters ``OTEL_TRACES_EXPORTER`` names (default otlp), as entry points."""
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    if "otlp" in names and protocol.strip() not in OTLP_BY_PROTOCOL:
        raise TracingUnavailableError(f"unsupported OTLP protocol {protocol!r}")
    otlp = OTLP_BY_PROTOCOL.get(protocol.strip(), "")
    return [otlp if n == "otlp" else n for n in names if n and n != "none"]


def load_exporter(name: str) -> SpanExporter:
    """The exporter an installed package registers under ``name``."""
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise TracingUnavailableError(
            f"OTEL_TRACES_EXPORTER: no trace exporter {name!r} is installed"
        )
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter


def resource(model: str) -> Resource:
    """The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, process, host) with
    the model's name; service.name ``modelfleet`` unless the variables name one."""
    detected = Resource.create({"modelfleet.model": model})
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        detected = detected.merge(Resource({SERVICE_NAME: "modelfleet"}))
    return detected


def remote_parent(parent: TraceParent) -> Any:
    """A context whose current span is the caller's, as ``traceparent`` names it."""
    state = TraceState.from_header([parent.tracestate]) if parent.tracestate else None
    caller = SpanContext(
        int(parent.trace_id, 16),
        int(parent.parent_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(parent.flags),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(caller))


class OtelTracer:
    """``tracing.Tracer`` over an OpenTelemetry SDK tracer provider of the runtime's own."""

    def __init__(self, model: str) -> None:
        self.model = model
        # A malformed tracestate is dropped, as the W3C asks: not a warning on every request.
        logging.getLogger("opentelemetry.trace.span").setLevel(logging.ERROR)
        self.provider = TracerProvider(resource=resource(model))
        for name in exporter_names():
            self.provider.add_span_processor(BatchSpanProcessor(load_exporter(name)))
        self.tracer = self.provider.get_tracer("modelfleet_runtime", __version__)

    @contextmanager
    def span(self, name: str, attributes: dict[str, str | int]) -> Iterator[Any]:
        with self.tracer.start_as_current_span(
            name, attributes={"modelfleet.model": self.model, **attributes}
        ) as span:
            yield span

    def start_infer(self, protocol: str, model: str, parent: TraceParent | None) -> Any:
        return self.tracer.start_span(
            "infer",
            remote_parent(parent) if parent is not None else None,
            kind=SpanKind.SERVER,
            attributes={"modelfleet.model": model, "modelfleet.protocol": protocol},
        )

    def trace_id(self, span: Any) -> str:
        return format(span.get_span_context().trace_id, "032x")

    def end_infer(self, span: Any, status: int, version: str) -> None:
        if span.is_recording():
            span.set_attribute("modelfleet.status_code", status)
            if version:
                span.set_attribute("modelfleet.version", version)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"status {status}"))
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()
