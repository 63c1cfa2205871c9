"""The ASGI application on the HTTP port: protocol fast paths first, then one Starlette router.

Every error leaves as JSON ``{"error": ...}``: a :class:`GatewayError` through the one status
table, an unknown route or method as 404/405, and anything unexpected as a generic 500 (the
traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gateway.core.errors import GatewayError
from gateway.logs import CURRENT_REQUEST, RequestInfo, current_request_id, log_access, request_id_from
from gateway.protocols.http import Message, Receive, Scope, Send, header
from gateway.protocols.http_errors import gateway_error_response, internal_error_message, json_response
from gateway.protocols.mounts import FastPath

log = logging.getLogger(__name__)


class HttpApp:
    """Fast paths (raw ASGI, for the hot routes) in front of a router for everything else.

    Every HTTP request gets a request id (the client's ``X-Request-Id`` if well-formed, else a
    new one), returned in the ``x-request-id`` response header and carried by every log
    record of the request; with ``access_log`` each request also leaves one access record.
    """

    def __init__(
        self, routes: Sequence[BaseRoute], fast_paths: Sequence[FastPath] = (), access_log: bool = False
    ) -> None:
        self.fast_paths = tuple(fast_paths)
        self.access_log = access_log
        self.router = Starlette(
            routes=list(routes),
            exception_handlers={
                GatewayError: _handle_gateway_error,
                HTTPException: _handle_http_exception,
                Exception: _handle_unexpected,
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        info = RequestInfo(request_id_from(header(scope, b"x-request-id")))
        token = CURRENT_REQUEST.set(info)
        id_header = (b"x-request-id", info.request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        started = time.perf_counter() if self.access_log else 0.0
        try:
            await self._dispatch(scope, receive, send_with_id)
        finally:
            CURRENT_REQUEST.reset(token)  # uvicorn gives each request its own task; an in-process caller may not
            if self.access_log:
                if not info.protocol:
                    info.protocol = "http"
                    info.model = scope.get("path_params", {}).get("model", "")
                    info.version = scope.get("path_params", {}).get("version", "")
                log_access(info, str(status), time.perf_counter() - started)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        for match in self.fast_paths:
            handler = match(scope)
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.router(scope, receive, send)


async def _handle_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return gateway_error_response(exc)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "no such route", 405: f"method {request.method} not allowed here"}
    return json_response({"error": message.get(exc.status_code, exc.detail)}, exc.status_code, exc.headers)


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error serving %s (request id %s)", request.url.path, current_request_id(), exc_info=exc)
    return json_response({"error": internal_error_message()}, 500)
