"""The one table mapping core error kinds to HTTP statuses, and JSON error bodies."""

from __future__ import annotations

import math

import orjson

from gateway.core.errors import ErrorKind, GatewayError

HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.PAYLOAD_TOO_LARGE: 413,
    ErrorKind.RESOURCE_EXHAUSTED: 429,
    ErrorKind.FAILED_PRECONDITION: 409,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNIMPLEMENTED: 501,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.DEADLINE_EXCEEDED: 504,
}


def error_status(exc: GatewayError) -> int:
    return HTTP_STATUS[exc.kind]


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def error_headers(exc: GatewayError) -> list[tuple[bytes, bytes]]:
    """Extra headers: Retry-After (whole seconds) on overload."""
    if exc.retry_after is None:
        return []
    return [(b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode())]
