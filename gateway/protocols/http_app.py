"""The ASGI application on the HTTP port: protocol fast paths first, then one Starlette router.

Every error leaves as JSON ``{"error": ...}``: a :class:`GatewayError` through the one status
table, an unknown route or method as 404/405, and anything unexpected as a generic 500 (the
traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gateway.core.errors import GatewayError
from gateway.protocols.http import Receive, Scope, Send
from gateway.protocols.http_errors import gateway_error_response, json_response
from gateway.protocols.mounts import FastPath

log = logging.getLogger(__name__)


class HttpApp:
    """Fast paths (raw ASGI, for the hot routes) in front of a router for everything else."""

    def __init__(self, routes: Sequence[BaseRoute], fast_paths: Sequence[FastPath] = ()) -> None:
        self.fast_paths = tuple(fast_paths)
        self.router = Starlette(
            routes=list(routes),
            exception_handlers={
                GatewayError: _handle_gateway_error,
                HTTPException: _handle_http_exception,
                Exception: _handle_unexpected,
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
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
    log.exception("unexpected error serving %s", request.url.path, exc_info=exc)
    return json_response({"error": "internal error (see the gateway log)"}, 500)
