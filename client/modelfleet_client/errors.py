"""The one exception the client raises: ``InferenceServerError``.

Every failure a caller can see arrives as one: an error answer from the server (its status and
the message of its ``{"error": "..."}`` body), a gRPC status (mapped to the HTTP status of the
same meaning), a server that cannot be reached (503, like gRPC's UNAVAILABLE), a call that ran
out of time (504), an answer that is not the protocol's (502), and bad input to the client
itself (400, raised before anything is sent).
"""

from __future__ import annotations

GRPC_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 413,  # the runtime's answer to a message over its size limit
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
"""gRPC status code name -> the HTTP status of the same meaning (others: 500)."""


class InferenceServerError(Exception):
    """A call failed. ``status`` is the HTTP status (gRPC codes mapped to theirs: see
    ``GRPC_STATUS``), ``message`` the server's own words where it sent any. ``retry_after`` is
    the delay in seconds the server asked for (``Retry-After``), ``grpc_code`` the gRPC status
    code's name when the call went over gRPC."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retry_after: float | None = None,
        grpc_code: str | None = None,
    ) -> None:
        super().__init__(f"[{status}] {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.grpc_code = grpc_code

    @property
    def retryable(self) -> bool:
        """Whether trying again may succeed: 503 (unavailable, overloaded, not ready yet,
        unreachable) only. Other 4xx never: the same request gets the same answer."""
        return self.status == 503
