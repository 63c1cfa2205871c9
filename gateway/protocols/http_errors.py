"""The one table mapping core error kinds to HTTP statuses, and JSON error bodies."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from gateway.core.errors import ErrorKind, GatewayError
from gateway.logs import current_request_id

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


#: Tells the client (and uvicorn) the connection ends here: a refused body is not read any further.
CLOSE: tuple[bytes, bytes] = (b"connection", b"close")


def error_headers(exc: GatewayError) -> list[tuple[bytes, bytes]]:
    """Extra headers: Retry-After (whole seconds) on overload; Connection: close on a body too large."""
    if exc.kind is ErrorKind.PAYLOAD_TOO_LARGE:
        return [CLOSE]
    if exc.retry_after is None:
        return []
    return [(b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode())]


def internal_error_message() -> str:
    """The generic message of an unexpected failure, with the request id the log carries too."""
    request_id = current_request_id()
    suffix = "" if request_id is None else f", request id {request_id}"
    return f"internal error (see the gateway log{suffix})"


def json_response(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


def gateway_error_response(exc: GatewayError) -> Response:
    headers = {k.decode(): v.decode() for k, v in error_headers(exc)}
    return Response(error_body(exc.message), status_code=error_status(exc), media_type="application/json",
                    headers=headers)  # fmt: skip
