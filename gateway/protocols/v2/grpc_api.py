"""Open Inference Protocol (V2) over gRPC: ``inference.GRPCInferenceService`` plus ``grpc.health.v1``.

Each method converts the message (:mod:`gateway.protocols.v2.grpc_codec`), calls the
:class:`DataPlane`, and converts back; failures become status codes through
:mod:`gateway.protocols.grpc_errors` only. ``ModelInfer`` is also measured: request count
by gRPC status name, duration from receipt to response ready, and requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from gateway.core.dataplane import DataPlane
from gateway.core.errors import GatewayError, ModelNotReady
from gateway.core.traffic import ROUTE_KEY_HEADER, ROUTE_KEY_PARAMETER
from gateway.metrics import Metrics, outcome_of
from gateway.protocols.grpc_errors import abort_internal, abort_with, status_for, status_on_error
from gateway.protocols.v2.grpc_codec import (
    ModelInferRequestConverter,
    ModelInferResponseConverter,
    model_metadata_response,
    server_metadata_response,
)
from gateway.protocols.v2.repository_api import RepositoryAccess, RepositoryServicerMixin
from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

PROTOCOL: Final = "grpc"
SERVICE_NAME: Final = "inference.GRPCInferenceService"
#: Health services answered from the data plane's readiness: the server overall ("") and the V2 service.
HEALTH_SERVICES: Final = ("", SERVICE_NAME, "tensorflow.serving.PredictionService")

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class InferenceServicer(RepositoryServicerMixin, pb_grpc.GRPCInferenceServiceServicer):
    """The six V2 RPCs on top of a :class:`DataPlane` (plus the repository extension when given)."""

    def __init__(self, dataplane: DataPlane, metrics: Metrics, repository: RepositoryAccess | None = None) -> None:
        self._repository = repository
        self._dataplane = dataplane
        self._metrics = metrics
        self._inflight = metrics.inflight.labels(PROTOCOL)

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dataplane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dataplane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        """Ready or not for a model the repository knows; NOT_FOUND for one it does not."""
        async with status_on_error(context):
            try:
                ready = self._dataplane.model_ready(request.name, request.version or None)
            except ModelNotReady:  # a broken model exists but is not ready: that is the answer
                ready = False
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return server_metadata_response(self._dataplane.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        async with status_on_error(context):
            metadata = self._dataplane.model_metadata(request.name, request.version or None)
        return model_metadata_response(metadata)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        started = time.perf_counter()
        self._inflight.inc()
        try:
            typed = ModelInferRequestConverter.to_types(request)
            for key, value in context.invocation_metadata() or ():
                if key == ROUTE_KEY_HEADER and value:  # a sticky traffic split
                    typed.parameters[ROUTE_KEY_PARAMETER] = str(value)
            response = await self._dataplane.infer(typed)
            message = ModelInferResponseConverter.from_types(response)
        except GatewayError as error:
            self._observe(
                request, "", status_for(error), outcome_of(error.is_client_error, not error.is_client_error), started
            )
            await abort_with(context, error)
        except asyncio.CancelledError:  # the client went away or its deadline passed
            self._observe(request, "", grpc.StatusCode.CANCELLED, outcome_of(True, False), started)
            raise
        except Exception:
            log.exception("unexpected error in ModelInfer for model %r", request.model_name)
            self._observe(request, "", grpc.StatusCode.INTERNAL, outcome_of(False, True), started)
            await abort_internal(context)
        finally:
            self._inflight.dec()
        self._observe(request, response.model_version, grpc.StatusCode.OK, outcome_of(False, False), started)
        return message

    def _observe(
        self, request: pb.ModelInferRequest, version: str, code: grpc.StatusCode, outcome: str, started: float
    ) -> None:
        label = version or self._version_label(request)
        self._metrics.observe_request(
            request.model_name, label, PROTOCOL, code.name, outcome, time.perf_counter() - started
        )

    def _version_label(self, request: pb.ModelInferRequest) -> str:
        """The version a failed request resolves to, or "": made-up versions must not become label values."""
        try:
            return str(self._dataplane.manager.resolve(request.model_name, request.model_version or None).version)
        except GatewayError:
            return ""


class GatewayHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1.Health`` whose status follows :meth:`DataPlane.ready` at every Check.

    SERVING once start-up loading finished, NOT_SERVING while loading or draining, and
    NOT_SERVING for good after :meth:`enter_graceful_shutdown` (the base class ignores
    later updates).
    """

    def __init__(self, dataplane: DataPlane) -> None:
        super().__init__()
        self._dataplane = dataplane

    async def refresh(self) -> None:
        """Publish the data plane's readiness to every health service (and to Watch streams)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self._dataplane.ready()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in HEALTH_SERVICES:
            await self.set(service, status)

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Context) -> Any:
        await self.refresh()
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Context) -> None:
        await self.refresh()
        await super().Watch(request, context)


def add_grpc_services(
    server: grpc.aio.Server, dataplane: DataPlane, metrics: Metrics, repository: RepositoryAccess | None = None
) -> GatewayHealthServicer:
    """Register the V2 service and health checking on ``server``; returns the health servicer.

    The caller calls ``await health.enter_graceful_shutdown()`` when it starts draining.
    """
    servicer = InferenceServicer(dataplane, metrics, repository)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health = GatewayHealthServicer(dataplane)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return health


def grpc_server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel options for ``grpc.aio.server``: explicit message limits, and no silent port sharing.

    gRPC's own limit answers an oversized request with RESOURCE_EXHAUSTED before it is
    parsed. ``so_reuseport`` is on by default in gRPC on Linux, which would let a second
    gateway bind the same port and steal half the connections; turning it off makes that a
    bind error instead.
    """
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
