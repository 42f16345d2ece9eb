"""The one place where exceptions become HTTP answers: ``{"error": "..."}`` with the right
status, never FastAPI's 422 ``detail``. Client errors log at info, server errors with their
traceback. ``app.create_app`` installs these.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from modelfleet_runtime import codec
from modelfleet_runtime.errors import ServingError

log = logging.getLogger(__name__)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        codec.error_body(message), status_code=status, media_type="application/json",
        headers=headers,
    )  # fmt: skip


async def _serving_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    if exc.status_code >= 500:
        log.warning("%s", exc.message)
    else:
        log.info("rejected request: %s", exc.message)
    return error_response(exc.status_code, exc.message)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
    )
    return error_response(400, f"invalid request: {problems}")


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
