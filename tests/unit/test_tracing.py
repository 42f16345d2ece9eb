"""The W3C ``traceparent`` parser (Trace Context level 1, section 3.2) against the
specification's own examples and its rules for invalid and future versions, and the header
and metadata readers of both transports."""

from __future__ import annotations

import pytest

from modelfleet_runtime.fastpath import _headers
from modelfleet_runtime.grpc_api import trace_metadata
from modelfleet_runtime.tracing import TraceParent, parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_the_specifications_example() -> None:
    parsed = parse_traceparent(f"00-{TRACE}-{PARENT}-01", "rojo=00f067aa0ba902b7")
    assert parsed == TraceParent(TRACE, PARENT, 1, "rojo=00f067aa0ba902b7")
    assert parsed.sampled


@pytest.mark.parametrize(("flags", "sampled"), [("00", False), ("01", True), ("03", True)])
def test_sampled_is_bit_zero_of_the_flags(flags: str, sampled: bool) -> None:
    parsed = parse_traceparent(f"00-{TRACE}-{PARENT}-{flags}")
    assert parsed is not None and parsed.sampled is sampled


def test_a_later_version_may_carry_more_after_a_dash() -> None:
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-01-more") == TraceParent(TRACE, PARENT, 1)
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-01") == TraceParent(TRACE, PARENT, 1)


@pytest.mark.parametrize(
    "value",
    [
        "",
        f"00-{TRACE}-{PARENT}-01-",  # version 00 is exactly 55 characters
        f"00-{TRACE}-{PARENT}-011",
        f"01-{TRACE}-{PARENT}-01x",  # a later version: more only after a dash
        f"ff-{TRACE}-{PARENT}-01",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE.upper()}-{PARENT}-01",
        f"0-{TRACE}-{PARENT}-01",
        f"00-{TRACE}-{PARENT}-1",
        f"00_{TRACE}_{PARENT}_01",
        f" 00-{TRACE}-{PARENT}-01",
        f"00-{TRACE}-{PARENT}-01,00-{TRACE}-{PARENT}-01",  # two headers, joined
    ],
)
def test_malformed_values_are_none(value: str) -> None:
    assert parse_traceparent(value) is None


def test_http_headers_are_read_in_one_pass() -> None:
    scope = {
        "headers": [
            (b"content-length", b"12"),
            (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
            (b"tracestate", b"a=1"),
            (b"tracestate", b"b=2"),
        ]
    }
    assert _headers(scope) == (None, 12, f"00-{TRACE}-{PARENT}-01", "a=1,b=2")


def test_grpc_metadata_is_read_as_http_headers_are() -> None:
    value = f"00-{TRACE}-{PARENT}-01"
    both = trace_metadata([("traceparent", value), ("traceparent", value), ("x", "y")])
    assert both == (f"{value},{value}", None)
    assert trace_metadata(None) == (None, None)
