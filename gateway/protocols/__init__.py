"""Protocol adapters: thin translations between wire formats and the core data plane.

Each module in :data:`PROTOCOLS` has ``mount(mounts, ctx)`` (see :mod:`gateway.protocols.mounts`);
the server mounts them in this order. HTTP fast paths are tried before the router, and gRPC
health checking (last) covers every gRPC service mounted before it.
"""

from __future__ import annotations

from typing import Final

PROTOCOLS: Final = (
    "gateway.protocols.v2.rest_api",
    "gateway.protocols.v2.repository_api",
    "gateway.protocols.v2.grpc_api",
    "gateway.protocols.tfserving.rest_api",
    "gateway.protocols.tfserving.grpc_api",
    "gateway.protocols.grpc_health",
)
