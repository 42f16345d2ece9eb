"""Where exceptions from the FastAPI routes (health, metadata, repository) become HTTP answers:
``{"error": "..."}`` with the right status, never FastAPI's 422 ``detail``. The status, message
and log line come from ``dataplane.classify``, as for inference (``fastpath.py``) and gRPC.
``app.create_app`` installs these.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from modelfleet_runtime import codec
from modelfleet_runtime.dataplane import classify
from modelfleet_runtime.errors import ServingError


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        codec.error_body(message), status_code=status, media_type="application/json",
        headers=headers,
    )  # fmt: skip


async def _classified(request: Request, exc: Exception) -> Response:
    """A ServingError (its status) or anything unexpected (500, logged with its traceback)."""
    status, message = classify(exc, f"{request.method} {request.url.path}")
    return error_response(status, message)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
    )
    return error_response(400, f"invalid request: {problems}")


def install_error_handlers(app: FastAPI) -> None:
    # ServingError needs its own entry: Starlette runs the ``Exception`` handler in its
    # outermost middleware, which answers and then re-raises (to the server's own log).
    app.add_exception_handler(ServingError, _classified)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _classified)
