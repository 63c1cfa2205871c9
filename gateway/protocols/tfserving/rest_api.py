"""TF Serving's REST API on the gateway's HTTP port, for every model whatever its backend.

``GET /v1/models/{m}[/versions/{v}|/labels/{l}]`` (status), the same plus ``/metadata``,
and ``POST ...:predict``. Paths are matched with TF Serving's own expressions (a model name
has no ``/`` or ``:``, a version is digits, case-insensitive), by one route object rather than
Starlette path templates, because ``{m}:predict`` is not a template Starlette can split.
``:classify`` and ``:regress`` answer 501. Errors are ``{"error": "..."}`` with the status from
:mod:`gateway.protocols.http_errors`, the same table the V2 API uses.

Mounted on the HTTP port by :func:`mount`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final

from starlette.datastructures import URLPath
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, NoMatchFound

from gateway.core.dataplane import DataPlane
from gateway.core.errors import GatewayError, Unsupported
from gateway.core.types import InferRequest
from gateway.metrics import Metrics, RequestLabels
from gateway.protocols.http import Receive, Scope, Send, read_body, respond
from gateway.protocols.http_envelope import measured
from gateway.protocols.http_errors import gateway_error_response, json_response
from gateway.protocols.mounts import Mounts, ProtocolContext
from gateway.protocols.tfserving.json_codec import decode_predict, encode_predict, parse_predict_body
from gateway.protocols.tfserving.servables import (
    ServableRef,
    message_json,
    metadata_json,
    model_metadata,
    model_status,
    resolve,
)
from gateway.protocols.tracing import traced_http

log = logging.getLogger(__name__)

PROTOCOL: Final = "tfs_rest"
_SERVABLE: Final = r"/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
_GET_PATH: Final = re.compile(_SERVABLE + r"(?P<metadata>/metadata)?", re.IGNORECASE)
_POST_PATH: Final = re.compile(_SERVABLE + r":(?P<method>classify|regress|predict)", re.IGNORECASE)
_SCOPE_KEY: Final = "tfs_target"


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed TF Serving path: which servable, what to do, and the HTTP method that does it."""

    ref: ServableRef
    action: str
    method: str


def parse_path(path: str) -> Target | None:
    """The TF Serving target of ``path`` (status, metadata, predict, classify, regress), else None."""
    found = _GET_PATH.fullmatch(path)
    if found is not None:
        return Target(_ref(found), "metadata" if found["metadata"] else "status", "GET")
    found = _POST_PATH.fullmatch(path)
    if found is not None:
        return Target(_ref(found), found["method"].lower(), "POST")
    return None


def _ref(found: re.Match[str]) -> ServableRef:
    return ServableRef(found["model"], found["version"], found["label"])


def mount(mounts: Mounts, ctx: ProtocolContext) -> None:
    mounts.http_routes.append(TFServingRoute(TFServingRest(ctx.dataplane, ctx.metrics, ctx.max_request_bytes)))


class TFServingRest:
    """The handlers behind :class:`TFServingRoute`, over the shared data plane."""

    def __init__(self, dataplane: DataPlane, metrics: Metrics, max_body_bytes: int) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def dispatch(self, target: Target, scope: Scope, receive: Receive, send: Send) -> None:
        if target.action == "predict":
            await self.predict(target.ref, scope, receive, send)
            return
        try:
            doc = self._describe(target)
        except GatewayError as exc:
            await gateway_error_response(exc)(scope, receive, send)
            return
        await json_response(doc)(scope, receive, send)

    def _describe(self, target: Target) -> dict[str, object]:
        if target.action == "status":
            return message_json(model_status(self.dataplane, target.ref))
        if target.action == "metadata":
            return metadata_json(model_metadata(self.dataplane, target.ref))
        raise Unsupported(f":{target.action} is not supported by this gateway; use :predict")

    async def predict(self, ref: ServableRef, scope: Scope, receive: Receive, send: Send, traced: bool = False) -> None:
        """Serve one ``:predict`` (raw ASGI: read, resolve, decode, infer, encode; measured)."""
        tracer = self.dataplane.tracer
        if tracer.enabled and not traced:  # tracing: the same request, inside its request span
            run = lambda w: self.predict(ref, scope, receive, w, traced=True)  # noqa: E731
            return await traced_http(tracer, scope, send, PROTOCOL, ref.name, run)
        labels = RequestLabels(ref.name)

        async def handle() -> None:
            served = resolve(self.dataplane, ref)
            labels.version = str(served.version)
            body = await read_body(scope, receive, self.max_body_bytes)
            with tracer.span("decode"):
                inputs, fmt = decode_predict(parse_predict_body(body), self.dataplane.input_rules(served))
            # a request naming no version (the split chose it) keeps model_version empty: shadow copies apply
            named = ref.version if ref.label is None else labels.version
            request = InferRequest(served.model, inputs, model_version=named)
            response = await self.dataplane.infer(served, request)
            with tracer.span("encode"):
                payload = encode_predict(response.outputs, fmt)
            await respond(send, 200, payload)

        await measured(scope, send, self.metrics, PROTOCOL, labels, handle)


class TFServingRoute(BaseRoute):
    """One route for every TF Serving path: FULL match on the right method, PARTIAL (405) otherwise."""

    def __init__(self, api: TFServingRest) -> None:
        self.api = api

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        target = parse_path(scope["path"])
        if target is None:
            return Match.NONE, {}
        full = scope["method"] == target.method or (target.method == "GET" and scope["method"] == "HEAD")
        return (Match.FULL if full else Match.PARTIAL), {_SCOPE_KEY: target}

    def url_path_for(self, name: str, /, **path_params: object) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        target: Target = scope[_SCOPE_KEY]
        if scope["method"] != target.method and not (target.method == "GET" and scope["method"] == "HEAD"):
            raise HTTPException(405, headers={"Allow": target.method})
        await self.api.dispatch(target, scope, receive, send)
