"""W3C Trace Context on the request path, and the seam to OpenTelemetry.

``DataPlane.handle`` calls ``RequestTrace.begin`` for a request that carries a ``traceparent``
header (HTTP) or metadata entry (gRPC), or for every request while tracing is on: the trace id
goes into the log context (``logs.trace_id``), so every line the request causes carries it,
and the request's own log line (``DataPlane.handle``) is written at INFO when the caller
sampled the trace. ``start`` builds the ``Tracer`` (``otel.OtelTracer``) that ``server.build``
hands to the data plane and the model repository; with tracing off (the default) it returns
None and nothing imports OpenTelemetry.

The header is parsed here by hand, not by OpenTelemetry's ``TraceContextTextMapPropagator``:
that class lives in the optional ``otel`` extra, and with tracing off the request path must not
import it. The format is small and fixed (W3C Trace Context, level 1, section 3.2); the tests
hold this parser to it.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from contextvars import Token
from dataclasses import dataclass
from typing import Any, Protocol

from modelfleet_runtime import logs
from modelfleet_runtime.config import Settings

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_PARENT = "0" * 32, "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid ``traceparent``: the caller's trace, its span (our parent) and its flags."""

    trace_id: str  # 32 lowercase hex digits, not all zero
    parent_id: str  # 16 lowercase hex digits, not all zero
    flags: int
    tracestate: str | None = None  # passed on to our span as it came, when tracing is on

    @property
    def sampled(self) -> bool:
        """The caller records this trace (flag bit 0)."""
        return bool(self.flags & 1)


def parse_traceparent(value: str, tracestate: str | None = None) -> TraceParent | None:
    """The ``traceparent`` in ``value``, or None when it is malformed (ignored, never an
    error, as the W3C asks). Version 00 is exactly 55 characters; a later version may carry
    more after a dash, which is skipped; version ff is invalid."""
    found = _TRACEPARENT.match(value)
    if found is None:
        return None
    version, trace_id, parent_id, flags = found.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if len(value) != 55 and (version == "00" or value[55] != "-"):
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16), tracestate or None)


class Tracer(Protocol):
    """What the runtime asks of OpenTelemetry (``otel.OtelTracer``), so that the data plane
    and the repository need not import it."""

    def span(self, name: str, attributes: dict[str, str | int]) -> AbstractContextManager[Any]:
        """A span around a block, child of the current one (fetch, load)."""
        ...

    def start_infer(self, protocol: str, model: str, parent: TraceParent | None) -> Any:
        """The started span of one inference request, child of ``parent`` when given."""
        ...

    def trace_id(self, span: Any) -> str:
        """``span``'s trace id as 32 hex digits."""
        ...

    def end_infer(self, span: Any, status: int, version: str) -> None:
        """End the request's span with its status (an error from 500 up) and version."""
        ...

    def shutdown(self) -> None:
        """Export what is buffered and stop."""
        ...


class TracingUnavailableError(RuntimeError):
    """``--tracing`` is on, but OpenTelemetry is not installed or not configured right."""


def start(settings: Settings) -> Tracer | None:
    """The tracer ``settings`` ask for: None with tracing off (nothing imported)."""
    if not settings.tracing:
        return None
    try:
        from modelfleet_runtime import otel
    except ImportError as exc:
        raise TracingUnavailableError(
            f"--tracing needs OpenTelemetry: pip install 'modelfleet[otel]' ({exc})"
        ) from None
    return otel.OtelTracer(settings.model_name)


@dataclass(slots=True)
class RequestTrace:
    """One request's place in a trace: its trace id (the caller's, else our span's), whether
    the caller sampled it, and our span while tracing is on."""

    trace_id: str
    sampled: bool
    span: Any
    token: Token[str | None]

    @staticmethod
    def begin(
        tracer: Tracer | None,
        protocol: str,
        model: str,
        traceparent: str | None,
        tracestate: str | None,
    ) -> RequestTrace | None:
        """Start tracing a request; None when there is nothing to trace (no tracer and no
        valid header: the request goes on as if no header had come)."""
        parent = parse_traceparent(traceparent, tracestate) if traceparent else None
        if tracer is not None:
            span = tracer.start_infer(protocol, model, parent)
            trace_id = tracer.trace_id(span)
        elif parent is not None:
            span, trace_id = None, parent.trace_id
        else:
            return None
        sampled = parent is not None and parent.sampled
        return RequestTrace(trace_id, sampled, span, logs.trace_id.set(trace_id))

    def end(self, tracer: Tracer | None, status: int, version: str) -> None:
        """End the span (if any) and take the trace id out of the log context."""
        logs.trace_id.reset(self.token)
        if tracer is not None:
            tracer.end_infer(self.span, status, version)
