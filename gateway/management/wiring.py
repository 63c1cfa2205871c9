"""How the gateway assembles its control plane (kept apart so server.py only adds a few lines)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.lifecycle import Lifecycle
from gateway.management.app import ManagementApi, management_app
from gateway.management.auth import RequireToken, TokenCheck
from gateway.protocols.v2.repository_api import RepositoryAccess


@dataclass(frozen=True, slots=True)
class ControlPlane:
    #: The ASGI app for the management port.
    app: RequireToken
    #: What the data ports' V2 repository routes (REST and gRPC) use.
    repository: RepositoryAccess


def control_plane(
    lifecycle: Lifecycle, token: str | None, api: ManagementApi | None = None, local_ops_refused: str | None = None
) -> ControlPlane:
    """``local_ops_refused``: why load and unload are refused on both surfaces (None: allowed)."""
    api = api or ManagementApi(lifecycle, local_ops_refused=local_ops_refused)
    return ControlPlane(management_app(api, token), RepositoryAccess(lifecycle, TokenCheck(token), local_ops_refused))
