"""Open Inference Protocol (V2) over REST.

``POST .../infer`` is served by a raw-ASGI fast path (orjson, ``np.frombuffer``, no
framework on the hot route: FastAPI with pydantic bodies measured about 3x slower here).
Everything else goes through a small Starlette router. Both map errors through
:mod:`gateway.protocols.http_errors` only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.core.dataplane import DataPlane
from gateway.core.errors import GatewayError, InvalidInput
from gateway.core.traffic import ROUTE_KEY_HEADER, ROUTE_KEY_PARAMETER
from gateway.core.types import InferRequest
from gateway.metrics import Metrics
from gateway.protocols.http import Receive, Scope, Send, header, read_body, respond
from gateway.protocols.http_envelope import RequestLabels, measured
from gateway.protocols.http_errors import error_body, error_headers, error_status
from gateway.protocols.v2.json_codec import (
    HEADER_LENGTH,
    decode_raw_single_input,
    decode_request,
    encode_response,
    parse_json,
)
from gateway.protocols.v2.openapi import openapi_document

log = logging.getLogger(__name__)
PROTOCOL = "rest"
_PREFIX = "/v2/models/"
_SUFFIX = "/infer"
ROUTE_KEY_HEADER_BYTES = ROUTE_KEY_HEADER.encode()


def json_response(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


def gateway_error_response(exc: GatewayError) -> Response:
    headers = {k.decode(): v.decode() for k, v in error_headers(exc)}
    return Response(error_body(exc.message), status_code=error_status(exc), media_type="application/json",
                    headers=headers)  # fmt: skip


def infer_target(path: str) -> tuple[str, str | None] | None:
    """``(model, version)`` for ``/v2/models/{m}[/versions/{v}]/infer``, else None."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    parts = path[len(_PREFIX) : -len(_SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


class V2RestApp:
    """The ASGI application on the HTTP port: V2 (plus any extra routes, e.g. TF Serving)."""

    def __init__(
        self, dataplane: DataPlane, metrics: Metrics, max_body_bytes: int, extra_routes: Sequence[BaseRoute] = ()
    ) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.router = Starlette(
            # Extra routes first: an extension (e.g. the repository routes with a token) overrides a built-in one.
            routes=[*extra_routes, *self._routes()],
            exception_handlers={
                GatewayError: _handle_gateway_error,
                HTTPException: _handle_http_exception,
                Exception: _handle_unexpected,
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = infer_target(scope["path"])
            if target is not None:
                await self.infer(scope, receive, send, *target)
                return
        await self.router(scope, receive, send)

    # -- the hot path -------------------------------------------------------------------

    async def infer(self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None) -> None:
        """Serve one V2 infer request (raw ASGI: read, decode, infer, encode; measured)."""
        labels = RequestLabels(model, version or "")

        async def handle() -> None:
            body = await read_body(scope, receive, self.max_body_bytes)
            request = self._decode(scope, body, model, version)
            key = header(scope, ROUTE_KEY_HEADER_BYTES)
            if key:  # a sticky traffic split
                request.parameters[ROUTE_KEY_PARAMETER] = key.decode("latin-1")
            response = await self.dataplane.infer(request)
            labels.version = response.model_version
            payload, header_length = encode_response(response, request)
            if header_length is None:
                await respond(send, 200, payload)
            else:
                extra = [(HEADER_LENGTH.encode(), str(header_length).encode())]
                await respond(send, 200, payload, b"application/octet-stream", extra)

        await measured(scope, send, self.metrics, PROTOCOL, labels, handle)

    def _decode(self, scope: Scope, body: bytes, model: str, version: str | None) -> InferRequest:
        raw_length = header(scope, HEADER_LENGTH.encode())
        if raw_length is None:
            return decode_request(body, None, model, version)
        try:
            length = int(raw_length)
        except ValueError:
            raise InvalidInput("Inference-Header-Content-Length is not an integer") from None
        if length == 0:
            inputs = self.dataplane.model_metadata(model, version).inputs
            if len(inputs) != 1:
                raise InvalidInput(f"a header-less binary body needs a single-input model; {model!r} has {len(inputs)}")
            return decode_raw_single_input(body, inputs[0], model, version)
        return decode_request(body, length, model, version)

    # -- everything else ----------------------------------------------------------------

    def _routes(self) -> list[BaseRoute]:
        return [
            Route("/v2", self._server_metadata, methods=["GET"]),
            Route("/v2/health/live", self._live, methods=["GET"]),
            Route("/v2/health/ready", self._ready, methods=["GET"]),
            Route("/v2/models/{model}", self._model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}", self._model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{model}/infer", _InferEndpoint(self), methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", _InferEndpoint(self), methods=["POST"]),
            Route("/v2/repository/index", self._repository_index, methods=["POST"]),
            Route("/openapi.json", self._openapi, methods=["GET"]),
        ]

    async def _server_metadata(self, request: Request) -> Response:
        return json_response(self.dataplane.server_metadata())

    async def _live(self, request: Request) -> Response:
        return json_response({"live": self.dataplane.live()})

    async def _ready(self, request: Request) -> Response:
        ready = self.dataplane.ready()
        return json_response({"ready": ready}, 200 if ready else 503)

    async def _model_metadata(self, request: Request) -> Response:
        p = request.path_params
        return json_response(self.dataplane.model_metadata(p["model"], p.get("version")).to_dict())

    async def _model_ready(self, request: Request) -> Response:
        p = request.path_params
        ready = self.dataplane.model_ready(p["model"], p.get("version"))
        return json_response({"name": p["model"], "ready": ready}, 200 if ready else 503)

    async def _repository_index(self, request: Request) -> Response:
        body = await request.body()
        only_ready = False
        if body.strip():
            doc = parse_json(body)
            if not isinstance(doc, dict) or not isinstance(doc.get("ready", False), bool):
                raise InvalidInput('repository index body must be an object like {"ready": true}')
            only_ready = doc.get("ready", False)
        rows = self.dataplane.repository_index()
        return json_response([r for r in rows if r.get("state") == "READY"] if only_ready else rows)

    async def _openapi(self, request: Request) -> Response:
        return json_response(openapi_document())


class _InferEndpoint:
    """The infer route as the router sees it (so other methods get 405); POSTs normally
    take the fast path in :meth:`V2RestApp.__call__` before routing."""

    def __init__(self, app: V2RestApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        await self.app.infer(scope, receive, send, params["model"], params.get("version"))


async def _handle_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return gateway_error_response(exc)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no route for {request.url.path}", 405: f"method {request.method} not allowed here"}
    return json_response({"error": message.get(exc.status_code, exc.detail)}, exc.status_code, exc.headers)


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s", request.url.path, exc_info=exc)
    return json_response({"error": "internal error (see the gateway log)"}, 500)
