"""The operator's JSON log lines (``--log-format json``, the chart's default) with kopf's
per-object loggers: found on the real control plane, where every such record failed to format
("--- Logging error ---", the kopf settings object is not serialisable)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any, cast

import kopf
import pytest
from kopf._core.actions.loggers import ObjectLogger

from modelfleet_runtime import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    logs.configure("INFO", "json")
    sink = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(sink)
    yield sink
    root.handlers[:] = saved
    root.setLevel(level)


def test_kopf_object_records_are_json_lines_naming_their_object(captured: io.StringIO) -> None:
    raw: dict[str, Any] = {
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u1"},
    }
    logger = ObjectLogger(body=kopf.Body(cast(kopf.RawBody, raw)), settings=kopf.OperatorSettings())
    logger.warning("Handler %s failed", "reconcile")
    (line,) = captured.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "Handler reconcile failed"
    assert record["level"] == "WARNING"
    assert record["object"]["name"] == "iris" and record["object"]["namespace"] == "ml"
    assert "settings" not in record and "k8s_skip" not in record
