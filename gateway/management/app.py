"""The management API: a small Starlette app on its own port, every route behind the bearer token.

Routes (JSON in and out; errors are ``{"error": ...}`` naming the field and the rule):

- ``GET  /api/health``                        liveness (no token needed)
- ``GET  /api/models``                        models, versions with state, labels, split, weights
- ``POST /api/models/{m}/load``              ``{"source": "3"}`` (a version folder) or ``{}`` (the model per its config)
- ``POST /api/models/{m}/unload``            ``{"version": "3"}`` or ``{}`` (every version)
- ``PUT  /api/models/{m}/labels``            ``{"labels": {"stable": "2"}}``
- ``PUT  /api/models/{m}/traffic``           ``{"weights": {"1": 90, "2": 10}, "shadow": {...}}``
                                              (``{"weights": null}`` clears the split)
- ``GET  /api/history``                       ``?model=m&limit=n``: deployment records, oldest first
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.core.errors import DeploymentConflict, GatewayError, InvalidInput
from gateway.core.lifecycle import Lifecycle
from gateway.management.auth import RequireToken, TokenCheck
from gateway.protocols.http_errors import error_status

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


async def json_body(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object (empty body: ``{}``), refusing unknown fields."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInput(f"body: over the limit of {MAX_BODY_BYTES} bytes")
    if not body.strip():
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("body: not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidInput("body: must be a JSON object")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InvalidInput(f"body: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return doc


class ManagementApi:
    """Routes over a :class:`Lifecycle` (and, when set, a rollout controller's routes)."""

    def __init__(
        self, lifecycle: Lifecycle, extra_routes: list[Route] | None = None, local_ops_refused: str | None = None
    ) -> None:
        self.lifecycle = lifecycle
        self.extra_routes = extra_routes or []
        #: Why load and unload are refused (several serving processes), or None.
        self.local_ops_refused = local_ops_refused

    def routes(self) -> list[Route]:
        return [
            Route("/api/health", self._health, methods=["GET"]),
            Route("/api/models", self._models, methods=["GET"]),
            Route("/api/models/{model}/load", self._load, methods=["POST"]),
            Route("/api/models/{model}/unload", self._unload, methods=["POST"]),
            Route("/api/models/{model}/labels", self._labels, methods=["PUT"]),
            Route("/api/models/{model}/traffic", self._traffic, methods=["PUT"]),
            Route("/api/history", self._history, methods=["GET"]),
            *self.extra_routes,
        ]

    async def _health(self, request: Request) -> Response:
        return json_response({"live": True})

    async def _models(self, request: Request) -> Response:
        return json_response({"models": self.lifecycle.models()})

    async def _load(self, request: Request) -> Response:
        doc = await json_body(request, frozenset({"source", "version"}))
        refuse_local_op("load", self.local_ops_refused)
        source = doc.get("source", doc.get("version"))
        return json_response(await self.lifecycle.load(request.path_params["model"], source))

    async def _unload(self, request: Request) -> Response:
        doc = await json_body(request, frozenset({"version"}))
        refuse_local_op("unload", self.local_ops_refused)
        return json_response(await self.lifecycle.unload(request.path_params["model"], doc.get("version")))

    async def _labels(self, request: Request) -> Response:
        doc = await json_body(request, frozenset({"labels"}))
        return json_response(await self.lifecycle.set_labels(request.path_params["model"], doc.get("labels")))

    async def _traffic(self, request: Request) -> Response:
        doc = await json_body(request, frozenset({"weights", "shadow"}))
        return json_response(await self.lifecycle.set_traffic(request.path_params["model"], doc))

    async def _history(self, request: Request) -> Response:
        model = request.query_params.get("model") or None
        raw_limit = request.query_params.get("limit", "")
        if raw_limit and not (raw_limit.isascii() and raw_limit.isdigit()):
            raise InvalidInput("limit: must be a positive integer")
        records = self.lifecycle.history.read(model, int(raw_limit) if raw_limit else None)
        return json_response({"records": records})


def refuse_local_op(operation: str, reason: str | None) -> None:
    """DeploymentConflict (409 / FAILED_PRECONDITION) when per-process operations are refused."""
    if reason is not None:
        raise DeploymentConflict(f"{operation}: {reason}")


def management_app(api: ManagementApi, token: str | None) -> RequireToken:
    """The ASGI app for the management port: token check, then the routes."""
    app = Starlette(
        routes=api.routes(),
        exception_handlers={
            GatewayError: _handle_gateway_error,
            HTTPException: _handle_http_exception,
            Exception: _handle_unexpected,
        },
    )
    return RequireToken(app, TokenCheck(token), open_paths=frozenset({"/api/health"}))


async def _handle_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return json_response({"error": exc.message}, error_status(exc))


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no route for {request.url.path}", 405: f"method {request.method} not allowed here"}
    return json_response({"error": message.get(exc.status_code, exc.detail)}, exc.status_code)


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s", request.url.path, exc_info=exc)
    return json_response({"error": "internal error (see the gateway log)"}, 500)
