"""Protocols are wired into the server as data: :data:`gateway.protocols.PROTOCOLS` lists their
modules, and each module's ``mount(mounts, ctx)`` adds its HTTP routes, fast paths and gRPC
services to a :class:`Mounts`. Adding a protocol is one module and one line in that list.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from gateway.core.dataplane import DataPlane
from gateway.metrics import Metrics
from gateway.protocols.http import Receive, Scope, Send

if TYPE_CHECKING:
    import grpc

    from gateway.protocols.v2.repository_api import RepositoryAccess

#: An ASGI handler for one request.
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Looks at a request and returns the handler that serves it without routing, or None.
FastPath = Callable[[Scope], Handler | None]
#: Adds services to a gRPC server.
GrpcInstaller = Callable[["grpc.aio.Server"], None]
Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ProtocolContext:
    """What every protocol gets: the one door into the core, the metrics, and the request limits; the
    V2 repository extension also gets the lifecycle behind the management token (None: index only)."""

    dataplane: DataPlane
    metrics: Metrics
    max_request_bytes: int
    repository: RepositoryAccess | None = None


@dataclass(slots=True)
class Mounts:
    """Everything the protocols contribute to the server."""

    http_routes: list[BaseRoute] = field(default_factory=list)
    http_fast_paths: list[FastPath] = field(default_factory=list)
    grpc_services: list[GrpcInstaller] = field(default_factory=list)
    #: gRPC service names that health checking reports on (besides the server as a whole, "").
    grpc_service_names: list[str] = field(default_factory=list)
    #: Called once the models are loaded, and when draining begins.
    on_ready: list[Hook] = field(default_factory=list)
    on_drain: list[Hook] = field(default_factory=list)


def mount_all(ctx: ProtocolContext, modules: Sequence[str]) -> Mounts:
    """Import each protocol module and let it mount itself."""
    mounts = Mounts()
    for name in modules:
        module: Any = importlib.import_module(name)
        module.mount(mounts, ctx)
    return mounts
