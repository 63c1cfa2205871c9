"""Building blocks for in-process tests: a loaded repository, the HTTP app and a gRPC server,
wired exactly as ``modelgate serve`` wires them (the protocols mount themselves)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from gateway.backends import default_registry
from gateway.core.backend import BackendRegistry
from gateway.core.codec.limits import TensorLimits
from gateway.core.dataplane import DataPlane, ModelMetadata, ModelRef
from gateway.core.models import ModelManager
from gateway.core.repository import ModelRepository
from gateway.core.tracing import NO_TRACER, Tracer
from gateway.core.types import InferRequest, InferResponse
from gateway.metrics import Metrics
from gateway.protocols import PROTOCOLS
from gateway.protocols.grpc_server import GrpcLimits, bounded_server_options
from gateway.protocols.http_app import HttpApp
from gateway.protocols.mounts import Mounts, ProtocolContext, mount_all

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Served:
    """A loaded repository behind the data plane, with the metrics it reports into."""

    dataplane: DataPlane
    metrics: Metrics
    manager: ModelManager

    def mounts(self, max_request_bytes: int = 64 * MiB, protocols: Sequence[str] = PROTOCOLS) -> Mounts:
        return mount_all(ProtocolContext(self.dataplane, self.metrics, max_request_bytes), protocols)

    def http_app(self, max_request_bytes: int = 64 * MiB) -> HttpApp:
        mounts = self.mounts(max_request_bytes)
        return HttpApp(mounts.http_routes, mounts.http_fast_paths)


@asynccontextmanager
async def loaded(
    repo: Path, registry: BackendRegistry | None = None, max_tensor_bytes: int = 64 * MiB, tracer: Tracer = NO_TRACER
) -> AsyncIterator[Served]:
    metrics = Metrics()
    manager = ModelManager(ModelRepository(repo), registry or default_registry(), metrics, tracer)
    await manager.load_all()
    try:
        yield Served(DataPlane(manager, metrics, TensorLimits(max_tensor_bytes)), metrics, manager)
    finally:
        await manager.unload_all()


@asynccontextmanager
async def grpc_served(
    served: Served, max_message_bytes: int = 64 * MiB
) -> AsyncIterator[tuple[grpc.aio.Channel, Mounts]]:
    """Every gRPC service on a free port, and a channel to it; health is refreshed as at start-up."""
    mounts = served.mounts()
    server = grpc.aio.server(options=bounded_server_options(GrpcLimits(max_message_bytes=max_message_bytes)))
    for install in mounts.grpc_services:
        install(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    for hook in mounts.on_ready:
        await hook()
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        ) as channel:
            yield channel, mounts
    finally:
        await server.stop(grace=None)


async def infer_named(plane: DataPlane, request: InferRequest) -> InferResponse:
    """Resolve the model the request names, then infer on it (what every protocol does)."""
    return await plane.infer(plane.resolve(ModelRef(request.model_name, request.model_version)), request)


def metadata_of(plane: DataPlane, name: str, version: str | None = None) -> ModelMetadata:
    return plane.model_metadata(plane.resolve(ModelRef(name, version)))
