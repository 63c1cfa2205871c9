"""``grpc.health.v1.Health`` on the gRPC port, following the data plane's readiness.

SERVING once start-up loading finished, NOT_SERVING while loading or draining, and
NOT_SERVING for good after draining begins (the base class ignores later updates). It
answers for the server as a whole (``""``) and for every gRPC service mounted before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from gateway.core.dataplane import DataPlane
from gateway.protocols.mounts import Mounts, ProtocolContext

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def mount(mounts: Mounts, ctx: ProtocolContext) -> None:
    health = GatewayHealthServicer(ctx.dataplane, ["", *mounts.grpc_service_names])
    mounts.grpc_services.append(lambda server: health_pb2_grpc.add_HealthServicer_to_server(health, server))
    mounts.on_ready.append(health.refresh)
    mounts.on_drain.append(health.enter_graceful_shutdown)


class GatewayHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    """Health whose status is refreshed from :meth:`DataPlane.ready` at every Check and Watch."""

    def __init__(self, dataplane: DataPlane, services: Sequence[str]) -> None:
        super().__init__()
        self._dataplane = dataplane
        self._services = tuple(services)

    async def refresh(self) -> None:
        """Publish the data plane's readiness to every health service (and to Watch streams)."""
        ready = self._dataplane.ready()
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in self._services:
            await self.set(service, status)

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Context) -> Any:
        await self.refresh()
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Context) -> None:
        await self.refresh()
        await super().Watch(request, context)
