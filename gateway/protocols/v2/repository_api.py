"""The V2 model-repository extension on the data ports, as Triton defines it (REST and gRPC).

REST: ``POST /v2/repository/index`` (``{"ready": true}`` lists only ready versions),
``POST /v2/repository/models/{m}/load`` and ``/unload``. gRPC: ``RepositoryIndex``,
``RepositoryModelLoad``, ``RepositoryModelUnload`` of ``inference.GRPCInferenceService``
(:class:`RepositoryServicerMixin`). A load (re)loads the model per its config with an
availability-preserving swap (:class:`gateway.core.lifecycle.Lifecycle`); a failed load
leaves what served before serving. Model files cannot be uploaded (Triton's ``file:``
parameters) nor configs overridden: models load only from the repository's folders.
When a management token is set, every route here needs it (``Authorization: Bearer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.core.dataplane import DataPlane
from gateway.core.errors import InvalidInput
from gateway.core.lifecycle import Lifecycle
from gateway.management.app import refuse_local_op
from gateway.management.auth import UNAUTHORIZED, TokenCheck
from gateway.protocols.grpc_errors import status_on_error
from gateway.protocols.http import parse_json, read_body
from gateway.protocols.mounts import Mounts, ProtocolContext
from gateway.protos import open_inference_grpc_pb2 as pb

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def mount(mounts: Mounts, ctx: ProtocolContext) -> None:
    """The REST routes (the index always; load and unload when the gateway has a lifecycle)."""
    mounts.http_routes.extend(repository_routes(ctx))


class RepositoryAccess:
    """What the load and unload routes need: the lifecycle and the token check."""

    def __init__(self, lifecycle: Lifecycle, check: TokenCheck, local_ops_refused: str | None = None) -> None:
        self.lifecycle = lifecycle
        self.check = check
        #: Why load and unload are refused (several serving processes), or None.
        self.local_ops_refused = local_ops_refused

    async def load(self, model: str, parameters: Mapping[str, object]) -> dict[str, Any]:
        _refuse_uploads(parameters)
        refuse_local_op("load", self.local_ops_refused)
        return await self.lifecycle.load(model)

    async def unload(self, model: str, parameters: Mapping[str, object]) -> dict[str, Any]:
        unknown = sorted(set(parameters) - {"unload_dependents"})
        if unknown:
            raise InvalidInput(f"parameters: {unknown} not supported (only unload_dependents)")
        refuse_local_op("unload", self.local_ops_refused)
        return await self.lifecycle.unload(model)


def _refuse_uploads(parameters: Mapping[str, object]) -> None:
    for key in parameters:
        if key.startswith("file:") or key == "config":
            raise InvalidInput(
                f"parameters.{key[:64]}: uploading model files or configs is not supported; "
                "models load only from folders inside the model repository"
            )
    if parameters:
        raise InvalidInput(f"parameters: {sorted(parameters)[:8]} not supported")


# -- REST --------------------------------------------------------------------------------------


def index_rows(dataplane: DataPlane, only_ready: bool) -> list[dict[str, Any]]:
    rows = dataplane.repository_index()
    return [r for r in rows if r.get("state") == "READY"] if only_ready else rows


def repository_routes(ctx: ProtocolContext) -> list[BaseRoute]:
    """``POST /v2/repository/index``, and ``/models/{m}/load`` and ``/unload`` when there is a lifecycle."""
    access = ctx.repository
    limit = ctx.max_request_bytes

    async def index(request: Request) -> Response:
        denied = _denied(request, access)
        if denied is not None:
            return denied
        doc = await _body(request, limit)
        ready = doc.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInput('repository index body must be an object like {"ready": true}')
        return _json(index_rows(ctx.dataplane, ready))

    routes: list[BaseRoute] = [Route("/v2/repository/index", index, methods=["POST"])]
    if access is None:
        return routes

    async def load(request: Request) -> Response:
        denied = _denied(request, access)
        if denied is not None:
            return denied
        return _json(await access.load(request.path_params["model"], _parameters(await _body(request, limit))))

    async def unload(request: Request) -> Response:
        denied = _denied(request, access)
        if denied is not None:
            return denied
        return _json(await access.unload(request.path_params["model"], _parameters(await _body(request, limit))))

    return [
        *routes,
        Route("/v2/repository/models/{model}/load", load, methods=["POST"]),
        Route("/v2/repository/models/{model}/unload", unload, methods=["POST"]),
    ]


def _denied(request: Request, access: RepositoryAccess | None) -> Response | None:
    if access is None or access.check.allows(request.headers.get("authorization")):
        return None
    return Response(orjson.dumps({"error": UNAUTHORIZED}), 401, media_type="application/json",
                    headers={"www-authenticate": 'Bearer realm="modelgate"'})  # fmt: skip


async def _body(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body(request.scope, request.receive, limit)
    if not body.strip():
        return {}
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object")
    return doc


def _parameters(doc: Mapping[str, Any]) -> dict[str, object]:
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput("parameters: must be an object")
    return parameters


def _json(content: Any) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


# -- gRPC --------------------------------------------------------------------------------------


class RepositoryServicerMixin:
    """``RepositoryIndex`` / ``RepositoryModelLoad`` / ``RepositoryModelUnload`` for the V2 servicer.

    The servicer sets ``self._repository``; without it (None) the RPCs answer UNIMPLEMENTED.
    """

    _repository: RepositoryAccess | None = None
    _dataplane: DataPlane

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Context) -> pb.RepositoryIndexResponse:
        if self._repository is not None:
            await self._access(context)
        rows = index_rows(self._dataplane, request.ready)
        models = [pb.RepositoryIndexResponse.ModelIndex(name=r["name"], version=r.get("version", ""),
                                                        state=r["state"], reason=r.get("reason", ""))
                  for r in rows]  # fmt: skip
        return pb.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        access = await self._access(context)
        async with status_on_error(context):
            await access.load(request.model_name, dict(request.parameters))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        access = await self._access(context)
        async with status_on_error(context):
            await access.unload(request.model_name, dict(request.parameters))
        return pb.RepositoryModelUnloadResponse()

    async def _access(self, context: Context) -> RepositoryAccess:
        access = self._repository
        if access is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the model repository extension is not enabled")
            raise AssertionError("unreachable")  # pragma: no cover
        authorization = dict(context.invocation_metadata() or ()).get("authorization")
        if not access.check.allows(authorization):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHORIZED)
        return access
