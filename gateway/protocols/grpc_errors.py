"""The one table from :class:`ErrorKind` to gRPC status codes, and how a handler aborts with it.

Every gRPC front end (V2 and TF Serving) ends a failed call through :func:`abort_with` or
:func:`status_on_error`, so a client always gets the same code for the same mistake and the
details never carry a traceback: a :class:`GatewayError`'s message is written to be shown to
clients, anything else becomes a generic INTERNAL while the traceback goes to the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, Final, NoReturn

import grpc

from gateway.core.errors import ErrorKind, GatewayError
from gateway.logs import REQUEST_ID_HEADER, current_request_id

log = logging.getLogger(__name__)

STATUS_BY_KIND: Final[Mapping[ErrorKind, grpc.StatusCode]] = MappingProxyType(
    {
        ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
        ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
        ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
        ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
        ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
        # gRPC has no "payload too large": its own message-size limit answers RESOURCE_EXHAUSTED too.
        ErrorKind.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
        ErrorKind.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
        ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
        ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
    }
)

#: Details sent for a failure that is not a GatewayError: the cause stays in the server log.
INTERNAL_DETAILS: Final = "internal error in the gateway; the server log has the details"
#: Trailing metadata key telling a client how many seconds to wait before retrying.
RETRY_AFTER_KEY: Final = "retry-after"


def status_for(error: GatewayError) -> grpc.StatusCode:
    """The gRPC status code for a gateway error."""
    return STATUS_BY_KIND[error.kind]


def trailing_metadata_for(error: GatewayError) -> tuple[tuple[str, str], ...]:
    """``retry-after`` (whole seconds, at least 1) when the error says when to retry, and the request id."""
    if error.retry_after is None:
        return request_id_metadata()
    return ((RETRY_AFTER_KEY, str(max(1, math.ceil(error.retry_after)))), *request_id_metadata())


def request_id_metadata() -> tuple[tuple[str, str], ...]:
    """``x-request-id`` of the call being served, if any (aborting replaces earlier trailing metadata)."""
    request_id = current_request_id()
    return () if request_id is None else ((REQUEST_ID_HEADER, request_id),)


def internal_details() -> str:
    """The generic details of an unexpected failure, with the request id the log carries too."""
    request_id = current_request_id()
    return INTERNAL_DETAILS if request_id is None else f"{INTERNAL_DETAILS} (request id {request_id})"


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: GatewayError) -> NoReturn:
    """End the call with the error's status code, its message as details, and retry-after if any."""
    await context.abort(status_for(error), error.message, trailing_metadata_for(error))
    raise AssertionError("unreachable: ServicerContext.abort always raises")  # pragma: no cover


async def abort_internal(context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    """End the call with INTERNAL and a generic message (the caller logs the traceback)."""
    await context.abort(grpc.StatusCode.INTERNAL, internal_details(), request_id_metadata())
    raise AssertionError("unreachable: ServicerContext.abort always raises")  # pragma: no cover


@asynccontextmanager
async def status_on_error(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    """Turn exceptions raised in the block into gRPC statuses.

    A :class:`GatewayError` maps through :data:`STATUS_BY_KIND`; any other exception is
    logged with its traceback and answered with INTERNAL. An abort already in progress and
    cancellation pass through untouched.
    """
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except GatewayError as error:
        await abort_with(context, error)
    except Exception:
        log.exception("unexpected error in a gRPC handler (request id %s)", current_request_id())
        await abort_internal(context)
