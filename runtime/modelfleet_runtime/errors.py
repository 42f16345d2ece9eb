"""The runtime's error family and the one place they become HTTP answers.

Every error a client can cause or see is a ``ServingError`` with a ``status_code``;
``dataplane.classify`` turns it into a status, a message and a log line, and each transport
into its own answer: over HTTP the Open Inference Protocol's error body
``{"error": "<what and why>"}`` (``fastpath.py``, and ``http_errors.py`` for the other routes),
over gRPC a status code (``grpc_api.py``). Messages say what was expected and what arrived,
and never hold credentials.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base of every error with an HTTP meaning. Client errors (4xx) log at info level."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(ServingError):
    """The request is malformed or does not match the model's signature."""

    status_code = 400


class UnauthorizedError(ServingError):
    """A bearer token is missing or not accepted."""

    status_code = 401


class ModelNotFoundError(ServingError):
    status_code = 404

    def __init__(self, name: str, version: int | None = None) -> None:
        what = f"model '{name}'" if version is None else f"version {version} of model '{name}'"
        super().__init__(f"{what} not found")


class PayloadTooLargeError(ServingError):
    status_code = 413


class ModelNotReadyError(ServingError):
    """No version of the model is loaded (yet, or because loading failed)."""

    status_code = 503


class OverloadedError(ServingError):
    """Too many requests in flight or queued: shed load now rather than queue without bound."""

    status_code = 503


class ShuttingDownError(ServingError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__("server is shutting down")


class InferenceError(ServingError):
    """ONNX Runtime failed while running a request that passed validation."""

    status_code = 500
