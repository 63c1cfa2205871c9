"""Open Inference Protocol (V2) over REST.

``POST .../infer`` is served by a raw-ASGI fast path (orjson, ``np.frombuffer``, no
framework on the hot route: FastAPI with pydantic bodies measured about 3x slower here).
Everything else goes through the shared router. Every request resolves its model first
(404 before the body is decoded), then decodes with the resolved version's input rules.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.core.dataplane import DataPlane, ModelRef
from gateway.core.errors import InvalidInput
from gateway.core.models import ServedVersion
from gateway.core.traffic import ROUTE_KEY_HEADER
from gateway.core.types import InferRequest
from gateway.metrics import RequestLabels
from gateway.protocols.http import Receive, Scope, Send, header, read_body, respond
from gateway.protocols.http_envelope import measured
from gateway.protocols.http_errors import json_response
from gateway.protocols.mounts import Handler, Mounts, ProtocolContext
from gateway.protocols.tracing import traced_http
from gateway.protocols.v2.json_codec import (
    HEADER_LENGTH,
    decode_raw_single_input,
    decode_request,
    encode_response,
)
from gateway.protocols.v2.openapi import openapi_document

PROTOCOL: Final = "rest"
_PREFIX: Final = "/v2/models/"
_SUFFIX: Final = "/infer"
_ROUTE_KEY: Final = ROUTE_KEY_HEADER.encode()


def mount(mounts: Mounts, ctx: ProtocolContext) -> None:
    api = V2Rest(ctx)
    mounts.http_fast_paths.append(api.fast_path)
    mounts.http_routes.extend(api.routes())


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


class V2Rest:
    """The V2 REST handlers over the data plane."""

    def __init__(self, ctx: ProtocolContext) -> None:
        self.ctx = ctx
        self.dataplane: DataPlane = ctx.dataplane

    def fast_path(self, scope: Scope) -> Handler | None:
        if scope["method"] != "POST":
            return None
        target = infer_target(scope["path"])
        if target is None:
            return None
        model, version = target
        return lambda s, r, w: self.infer(s, r, w, model, version)

    # -- the hot path -------------------------------------------------------------------

    async def infer(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None, traced: bool = False
    ) -> None:
        """Serve one V2 infer request (raw ASGI: resolve, read, decode, infer, encode; measured)."""
        tracer = self.dataplane.tracer
        if tracer.enabled and not traced:  # tracing: the same request, inside its request span
            run = lambda w: self.infer(scope, receive, w, model, version, traced=True)  # noqa: E731
            return await traced_http(tracer, scope, send, PROTOCOL, model, run)
        labels = RequestLabels(model)

        async def handle() -> None:
            key = header(scope, _ROUTE_KEY)  # a sticky traffic split
            ref = ModelRef(model, version, key=key.decode("latin-1") if key else None)
            target = self.dataplane.resolve(ref)
            labels.version = str(target.version)
            body = await read_body(scope, receive, self.ctx.max_request_bytes)
            with tracer.span("decode"):
                request = self._decode(scope, body, target, model, version)
            response = await self.dataplane.infer(target, request)
            with tracer.span("encode"):
                payload, header_length = encode_response(response, request)
            if header_length is None:
                await respond(send, 200, payload)
            else:
                extra = [(HEADER_LENGTH.encode(), str(header_length).encode())]
                await respond(send, 200, payload, b"application/octet-stream", extra)

        await measured(scope, send, self.ctx.metrics, PROTOCOL, labels, handle)

    def _decode(
        self, scope: Scope, body: bytes, target: ServedVersion, model: str, version: str | None
    ) -> InferRequest:
        rules = self.dataplane.input_rules(target)
        if not body:
            raise InvalidInput("request body is empty: send an InferRequest (JSON, or JSON header + binary tensors)")
        raw_length = header(scope, HEADER_LENGTH.encode())
        if raw_length is None:
            if header(scope, b"content-type") == b"application/octet-stream":
                raise InvalidInput(
                    "an application/octet-stream body needs the Inference-Header-Content-Length header "
                    "(the length of its JSON header; 0 for the raw data of a single-input model)"
                )
            return decode_request(body, None, model, version, rules)
        if not raw_length.isdigit() or len(raw_length) > 18:
            raise InvalidInput("Inference-Header-Content-Length must be a non-negative integer")
        length = int(raw_length)
        if length == 0:
            return decode_raw_single_input(body, model, version, rules)
        return decode_request(body, length, model, version, rules)

    # -- everything else ----------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v2", self._server_metadata, methods=["GET"]),
            Route("/v2/health/live", self._live, methods=["GET"]),
            Route("/v2/health/ready", self._ready, methods=["GET"]),
            Route("/v2/models/{model}", self._model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}", self._model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{model}/infer", self._infer_route, methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", self._infer_route, methods=["POST"]),
            Route("/openapi.json", self._openapi, methods=["GET"]),
        ]

    async def _infer_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The infer route as the router sees it (so other methods get 405); POSTs normally take the fast path."""
        params = scope["path_params"]
        await self.infer(scope, receive, send, params["model"], params.get("version"))

    async def _server_metadata(self, request: Request) -> Response:
        return json_response(self.dataplane.server_metadata())

    async def _live(self, request: Request) -> Response:
        return json_response({"live": self.dataplane.live()})

    async def _ready(self, request: Request) -> Response:
        ready = self.dataplane.ready()
        return json_response({"ready": ready}, 200 if ready else 503)

    async def _model_metadata(self, request: Request) -> Response:
        target = self.dataplane.resolve(_ref(request))
        return json_response(self.dataplane.model_metadata(target).to_dict())

    async def _model_ready(self, request: Request) -> Response:
        ref = _ref(request)
        ready = self.dataplane.model_ready(ref)
        return json_response({"name": ref.name, "ready": ready}, 200 if ready else 503)

    async def _openapi(self, request: Request) -> Response:
        return json_response(openapi_document())


def _ref(request: Request) -> ModelRef:
    params = request.path_params
    return ModelRef(params["model"], params.get("version"))
