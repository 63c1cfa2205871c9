"""Open Inference Protocol (V2) over gRPC: ``inference.GRPCInferenceService``.

Each method resolves the model through the :class:`DataPlane` (the one door), converts the
message (:mod:`gateway.protocols.v2.grpc_codec`) with the resolved version's input rules,
calls the data plane, and converts back; failures become status codes through
:mod:`gateway.protocols.grpc_errors` only. ``ModelInfer`` runs in the measured envelope
shared with TF Serving's ``Predict`` (:mod:`gateway.protocols.grpc_envelope`).
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import grpc

from gateway.core.dataplane import DataPlane, ModelRef
from gateway.core.traffic import ROUTE_KEY_HEADER
from gateway.metrics import Metrics, RequestLabels
from gateway.protocols.grpc_envelope import measured_rpc
from gateway.protocols.grpc_errors import status_on_error
from gateway.protocols.mounts import Mounts, ProtocolContext
from gateway.protocols.tracing import traced_rpc
from gateway.protocols.v2.grpc_codec import (
    ModelInferRequestConverter,
    ModelInferResponseConverter,
    model_metadata_response,
    server_metadata_response,
)
from gateway.protocols.v2.repository_api import RepositoryAccess, RepositoryServicerMixin
from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc

PROTOCOL: Final = "grpc"
SERVICE_NAME: Final = "inference.GRPCInferenceService"

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def mount(mounts: Mounts, ctx: ProtocolContext) -> None:
    servicer = InferenceServicer(ctx.dataplane, ctx.metrics, ctx.repository)
    mounts.grpc_services.append(
        lambda server: pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    )
    mounts.grpc_service_names.append(SERVICE_NAME)


class InferenceServicer(RepositoryServicerMixin, pb_grpc.GRPCInferenceServiceServicer):
    """The V2 RPCs on top of a :class:`DataPlane` (and the repository extension when given)."""

    def __init__(self, dataplane: DataPlane, metrics: Metrics, repository: RepositoryAccess | None = None) -> None:
        self._repository = repository
        self._dataplane = dataplane
        self._metrics = metrics

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dataplane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dataplane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        """Ready or not for a model the repository knows; NOT_FOUND for one it does not."""
        async with status_on_error(context):
            ready = self._dataplane.model_ready(ModelRef(request.name, request.version or None))
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return server_metadata_response(self._dataplane.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        async with status_on_error(context):
            target = self._dataplane.resolve(ModelRef(request.name, request.version or None))
            metadata = self._dataplane.model_metadata(target)
        return model_metadata_response(metadata)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context, traced: bool = False
    ) -> pb.ModelInferResponse:
        tracer = self._dataplane.tracer
        if tracer.enabled and not traced:  # tracing: the same call, inside its request span
            run = lambda: self.ModelInfer(request, context, traced=True)  # noqa: E731
            return await traced_rpc(tracer, context, PROTOCOL, request.model_name, run)
        labels = RequestLabels(request.model_name)
        key = _metadata_value(context.invocation_metadata(), ROUTE_KEY_HEADER)  # a sticky traffic split

        async def handle() -> pb.ModelInferResponse:
            ref = ModelRef(request.model_name, request.model_version or None, key=key or None)
            target = self._dataplane.resolve(ref)
            labels.version = str(target.version)
            with tracer.span("decode"):
                decoded = ModelInferRequestConverter.to_types(request, self._dataplane.input_rules(target))
            response = await self._dataplane.infer(target, decoded)
            with tracer.span("encode"):
                return ModelInferResponseConverter.from_types(response)

        return await measured_rpc(context, self._metrics, PROTOCOL, labels, handle)


def _metadata_value(metadata: Any, key: str) -> str | None:
    """One text metadata value (scanning the few entries costs less than building a dict per call)."""
    for item in metadata or ():
        if item[0] == key:
            return str(item[1])
    return None
