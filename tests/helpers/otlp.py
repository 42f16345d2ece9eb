"""An OTLP trace receiver on 127.0.0.1 for tests: a real gRPC server implementing
OpenTelemetry's ``TraceService`` (the collector's own protocol, from the opentelemetry-proto
package), which keeps every span it is sent so that a test can wait for the ones it expects.
What the runtime's OTLP exporter sends is what a collector would receive."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as service_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as service_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.helpers.waiting import wait_until


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(pairs)
    return {pair.key: _value(pair.value) for pair in items}


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, ids as lowercase hex ('' for no parent)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 2 = SERVER
    attributes: dict[str, Any]
    status_code: int  # Status.StatusCode: 0 unset, 1 ok, 2 error
    resource: dict[str, Any]
    events: tuple[str, ...]


class _TraceService(service_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()

    def Export(
        self, request: service_pb.ExportTraceServiceRequest, _context: Any
    ) -> service_pb.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes=_attributes(span.attributes),
                            status_code=span.status.code,
                            resource=resource,
                            events=tuple(event.name for event in span.events),
                        )
                    )
        with self.lock:
            self.spans.extend(received)
        return service_pb.ExportTraceServiceResponse()


@dataclass
class Receiver:
    endpoint: str  # for OTEL_EXPORTER_OTLP_ENDPOINT
    service: _TraceService

    def spans(self) -> list[ReceivedSpan]:
        with self.service.lock:
            return list(self.service.spans)

    def wait_for(
        self, what: str, match: Callable[[ReceivedSpan], bool], timeout: float = 30
    ) -> ReceivedSpan:
        """The first span received that ``match``es, waiting up to ``timeout`` s for it."""
        found: ReceivedSpan = wait_until(
            lambda: next((s for s in self.spans() if match(s)), None), timeout, what
        )
        return found


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """A TraceService on a free loopback port, stopped on the way out."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service = _TraceService()
    service_grpc.add_TraceServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield Receiver(f"http://127.0.0.1:{port}", service)
    finally:
        server.stop(None)
