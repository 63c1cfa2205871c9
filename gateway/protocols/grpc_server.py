"""The gRPC server's bounds and the one interceptor every unary call passes through.

:func:`bounded_server_options` turns the ``grpc_*`` settings into channel arguments: message
sizes, a handshake deadline, a header (metadata) size limit, concurrent streams per
connection, a maximum connection age (GOAWAY, then a grace period), server keepalive pings
that find dead peers, and keepalive enforcement (a client pinging more often than allowed is
sent GOAWAY ``too_many_pings``).

:class:`RequestInterceptor` gives every unary call a request id (the client's ``x-request-id``
metadata if well-formed, else a new one) returned in the trailing metadata and carried by
every log record of the call, turns any exception a handler lets escape into the gateway's
own status and words (never gRPC's ``Unexpected <class ...>`` details), and writes the access
log record when ``access_log`` is on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import grpc

from gateway.core.errors import GatewayError, InvalidInput
from gateway.logs import CURRENT_REQUEST, REQUEST_ID_HEADER, RequestInfo, log_access, request_id_from
from gateway.protocols.grpc_errors import abort_internal, abort_with, status_for

log = logging.getLogger(__name__)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Behavior = Callable[[Any, Context], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class GrpcLimits:
    """What a gRPC connection may take (the ``grpc_*`` settings)."""

    max_message_bytes: int = 64 * 1024 * 1024
    max_metadata_bytes: int = 32 * 1024
    max_concurrent_streams: int = 100
    max_connection_age: float = 3600.0
    max_connection_age_grace: float = 30.0
    keepalive: float = 60.0
    keepalive_timeout: float = 20.0
    min_ping_interval: float = 10.0
    handshake_timeout: float = 10.0


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def bounded_server_options(limits: GrpcLimits, reuse_port: bool = False) -> list[tuple[str, int]]:
    """Channel arguments for ``grpc.aio.server`` (no silent port sharing: ``so_reuseport`` off unless
    ``reuse_port``, for the serving processes of ``--workers`` on the port their supervisor reserved)."""
    return [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_metadata_size", limits.max_metadata_bytes),
        ("grpc.server_handshake_timeout_ms", _ms(limits.handshake_timeout)),
        ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
        ("grpc.max_connection_age_ms", _ms(limits.max_connection_age)),
        ("grpc.max_connection_age_grace_ms", _ms(limits.max_connection_age_grace)),
        ("grpc.keepalive_time_ms", _ms(limits.keepalive)),
        ("grpc.keepalive_timeout_ms", _ms(limits.keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(limits.min_ping_interval)),
        ("grpc.http2.max_ping_strikes", 2),
    ]


class RequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Request id, the gateway's own error words, and the access log, for every unary gRPC call."""

    def __init__(self, access_log: bool = False) -> None:
        self.access_log = access_log
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # unknown method (UNIMPLEMENTED) or a streaming one (health Watch)
        deserializer = handler.request_deserializer
        wrapped = grpc.unary_unary_rpc_method_handler(
            self._wrap(handler.unary_unary, method.rsplit("/", 1)[-1]),
            request_deserializer=None if deserializer is None else _never_raising(deserializer),
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, behavior: Behavior, name: str) -> Behavior:
        access_log = self.access_log
        undecodable = (
            f"the {name} request is not a valid protobuf message "
            "(malformed wire format, or a string field that is not UTF-8)"
        )

        async def call(request: Any, context: Context) -> Any:
            info = RequestInfo(request_id_from(_metadata_value(context.invocation_metadata(), REQUEST_ID_HEADER)))
            token = CURRENT_REQUEST.set(info)
            context.set_trailing_metadata(((REQUEST_ID_HEADER, info.request_id),))
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                if request is _UNDECODABLE:
                    raise InvalidInput(undecodable)
                return await behavior(request, context)
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except GatewayError as error:
                code = status_for(error)
                await abort_with(context, error)
            except Exception:
                log.exception("unexpected error in a gRPC call (request id %s)", info.request_id)
                code = grpc.StatusCode.INTERNAL
                await abort_internal(context)
            finally:
                CURRENT_REQUEST.reset(token)
                if access_log:
                    info.protocol = info.protocol or "grpc"
                    log_access(info, code.name, time.perf_counter() - started)

        return call


#: What :func:`_never_raising` returns for bytes that are not the expected message.
_UNDECODABLE: Final = object()


def _never_raising(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """gRPC answers a message that fails to parse with UNKNOWN and protobuf's own words
    ("Unexpected <class 'DecodeError'>..."); this lets the call answer INVALID_ARGUMENT in ours."""

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:
            return _UNDECODABLE

    return decode


def _metadata_value(metadata: Any, key: str) -> str | None:
    for item in metadata or ():
        if item[0] == key:
            value = item[1]
            return value if isinstance(value, str) else None
    return None
