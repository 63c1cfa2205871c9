"""The request span every traced protocol call runs in (only used when tracing is on).

A REST handler or gRPC method calls itself again inside :func:`traced_http` / :func:`traced_rpc`
when its tracer is enabled: the span is a SERVER span that continues the caller's trace when the
request carries W3C ``traceparent`` (and ``tracestate``) headers or metadata, names the protocol
and model, the request id when the client sent ``x-request-id``, and ends with the response's
status (HTTP code, or gRPC code name). The data plane adds the version it resolved and the V2
body's ``id``; decode, queue, batch, backend and encode spans are its children.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import grpc

from gateway.core.tracing import MODEL, PROTOCOL, REQUEST_ID, STATUS, Tracer
from gateway.protocols.http import Message, Scope, Send

T = TypeVar("T")

#: Headers (and gRPC metadata keys) read for the trace context and the request id.
_TRACE_HEADERS: Final = ("traceparent", "tracestate")
_REQUEST_ID: Final = "x-request-id"


def span_name(protocol: str) -> str:
    return f"{protocol} infer"


async def traced_http(
    tracer: Tracer, scope: Scope, send: Send, protocol: str, model: str, run: Callable[[Send], Awaitable[None]]
) -> None:
    """Run ``run`` (the handler, given the ``send`` to use) inside the request span."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    status = [500]

    async def watched(message: Message) -> None:
        if message["type"] == "http.response.start":
            status[0] = int(message["status"])
        await send(message)

    with tracer.span(span_name(protocol), _attributes(protocol, model, headers), _carrier(headers)) as span:
        try:
            await run(watched)
        finally:
            span.set(STATUS, str(status[0]))
            if status[0] >= 500:
                span.fail(f"answered {status[0]}")


async def traced_rpc(
    tracer: Tracer, context: grpc.aio.ServicerContext[Any, Any], protocol: str, model: str,
    run: Callable[[], Awaitable[T]],
) -> T:  # fmt: skip
    """Run ``run`` (the method) inside the request span; the span ends with the call's status code."""
    metadata = _metadata(context.invocation_metadata() or ())
    with tracer.span(span_name(protocol), _attributes(protocol, model, metadata), _carrier(metadata)) as span:
        code = grpc.StatusCode.UNKNOWN
        try:
            result = await run()
            code = context.code() or grpc.StatusCode.OK
            return result
        except BaseException:
            code = context.code() or grpc.StatusCode.CANCELLED
            raise
        finally:
            span.set(STATUS, code.name)
            if code not in _CLIENT_CODES:
                span.fail(f"ended with {code.name}")


#: Status codes that are the client's doing (or success): the request span is not marked failed.
_CLIENT_CODES: Final = frozenset({
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED,
})  # fmt: skip


def _metadata(items: Sequence[Any]) -> dict[str, str]:
    return {str(key): value for key, value in items if isinstance(value, str)}


def _carrier(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in _TRACE_HEADERS if name in headers}


def _attributes(protocol: str, model: str, headers: Mapping[str, str]) -> dict[str, str]:
    attributes = {PROTOCOL: protocol, MODEL: model[:64]}
    request_id = headers.get(_REQUEST_ID)
    if request_id:
        attributes[REQUEST_ID] = request_id[:128]
    return attributes
