"""Log set-up: JSON lines (python-json-logger) or plain text (the default on a terminal),
with the request id, model and version of the request being served taken from context
variables, and its trace id when the request came in a W3C trace (or tracing is on).

``cli.py`` calls ``configure`` once at start-up; the app sets ``request_id`` per request,
``tracing.RequestTrace`` sets ``trace_id``.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
model_name: ContextVar[str | None] = ContextVar("model_name", default=None)
trace_id: ContextVar[str | None] = ContextVar("trace_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
NOT_LOGGED = frozenset({"settings", "k8s_skip"})
"""Record attributes kept out of JSON lines: kopf's per-object loggers attach the operator's
whole settings (not serialisable: every record failed to format, "--- Logging error ---") and
a flag of its own. Their ``k8s_ref`` (kind, namespace, name, uid) is kept: it says which
object a line is about."""


class ContextFilter(logging.Filter):
    """Adds request_id, model and trace_id to every record made while serving a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        if getattr(record, "model", None) is None:
            record.model = model_name.get()
        trace = trace_id.get()
        if trace is not None:  # only on a traced request's lines, not null on every line
            record.trace_id = trace
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate
        return True


def resolve(fmt: str) -> str:
    """'auto' as what it means here: 'text' for a person at a terminal, 'json' for a log
    collector (a pod's stderr is a pipe, unless the pod asks for a TTY)."""
    if fmt != "auto":
        return fmt
    return "text" if sys.stderr.isatty() else "json"


def configure(level: str, fmt: str, model: str | None = None) -> None:
    """Send every log record (ours, uvicorn's, boto's) to stderr in one format ('json',
    'text' or 'auto': see ``resolve``), each tagged with the served ``model``."""
    model_name.set(model)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if resolve(fmt) == "json":
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"levelname": "level", "name": "logger", "k8s_ref": "object"},
                reserved_attrs=[*RESERVED_ATTRS, *NOT_LOGGED],
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Chatty libraries stay at warning; their debug output can carry request signatures.
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
