"""Wiring: one event loop running the REST, gRPC and metrics servers over one data plane.

Start-up binds every port first (liveness answers at once, readiness is 503 until the
models are loaded), then loads the repository. ``stop()`` (SIGTERM/SIGINT) marks the
gateway not ready, stops accepting connections, lets in-flight requests complete within
``shutdown_grace_seconds``, then unloads the models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from prometheus_client import make_asgi_app

from gateway.backends import default_registry
from gateway.core.backend import BackendRegistry
from gateway.core.dataplane import DataPlane
from gateway.core.history import DeploymentHistory
from gateway.core.lifecycle import Lifecycle
from gateway.core.models import ModelManager, ServedVersion, VersionState
from gateway.core.repository import ModelRepository
from gateway.core.rollout.controller import RolloutController, replica_name
from gateway.metrics import Metrics
from gateway.protocols.v2.rest_api import V2RestApp
from gateway.settings import Settings

log = logging.getLogger("modelgate")
_STATES = [s.value for s in VersionState]


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway stops all servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class BoundPorts:
    http: int
    grpc: int
    metrics: int
    management: int = 0


class Gateway:
    """The whole server process's contents; ``await run()`` serves until ``stop()``."""

    def __init__(self, settings: Settings, registry: BackendRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.manager = ModelManager(
            ModelRepository(settings.model_repository), registry or default_registry(), self._on_state, self.metrics
        )
        self.dataplane = DataPlane(self.manager, self.metrics)
        self.lifecycle = Lifecycle(self.manager, DeploymentHistory(settings.model_repository), self.metrics,
                                   drain_seconds=settings.shutdown_grace_seconds)  # fmt: skip
        self.rollouts = RolloutController(self.lifecycle, self.dataplane.evidence, replica_name(),
                                          settings.deployment_poll_seconds,
                                          repository_poll=settings.repository_poll)  # fmt: skip
        self._stop = asyncio.Event()
        self.ports: BoundPorts | None = None

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call from a signal handler)."""
        self.dataplane.draining = True
        self._stop.set()

    async def run(self) -> None:
        from gateway.management.app import ManagementApi
        from gateway.management.rollout_routes import rollout_routes
        from gateway.management.wiring import control_plane
        from gateway.protocols.tfserving.grpc_api import add_tfs_grpc_services
        from gateway.protocols.tfserving.rest_api import tfs_routes
        from gateway.protocols.v2.grpc_api import add_grpc_services, grpc_server_options
        from gateway.protocols.v2.repository_api import repository_routes

        s = self.settings
        http_sock = _bind(s.host, s.http_port)
        metrics_sock = _bind(s.host, s.metrics_port)
        api = ManagementApi(self.lifecycle, rollout_routes(self.rollouts))
        control = control_plane(self.lifecycle, s.token(), api)
        management_sock = _bind(s.management_host, s.management_port)
        import grpc

        grpc_server = grpc.aio.server(options=grpc_server_options(s.grpc_max_message_bytes))
        health = add_grpc_services(grpc_server, self.dataplane, self.metrics, control.repository)
        add_tfs_grpc_services(grpc_server, self.dataplane, self.metrics)
        try:
            grpc_port = grpc_server.add_insecure_port(f"{s.host}:{s.grpc_port}")
        except RuntimeError:
            grpc_port = 0
        if grpc_port == 0:
            http_sock.close()
            metrics_sock.close()
            management_sock.close()
            raise OSError(f"cannot bind gRPC port {s.host}:{s.grpc_port} (in use?)")
        self.ports = BoundPorts(http_sock.getsockname()[1], grpc_port, metrics_sock.getsockname()[1],
                                management_sock.getsockname()[1])  # fmt: skip
        tfs = [*tfs_routes(self.dataplane, self.metrics, s.max_request_bytes), *repository_routes(control.repository)]
        rest = V2RestApp(self.dataplane, self.metrics, s.max_request_bytes, extra_routes=tfs)
        http = _UvicornServer(self._uvicorn_config(rest))
        metrics = _UvicornServer(self._uvicorn_config(make_asgi_app(self.metrics.registry)))
        management = _UvicornServer(self._uvicorn_config(control.app))
        await grpc_server.start()
        tasks = [asyncio.create_task(http.serve([http_sock])), asyncio.create_task(metrics.serve([metrics_sock])),
                 asyncio.create_task(management.serve([management_sock]))]  # fmt: skip
        log.info(
            "modelgate listening: http=%s:%d grpc=%s:%d metrics=%s:%d management=%s:%d repository=%s",
            s.host, self.ports.http, s.host, self.ports.grpc, s.host, self.ports.metrics,
            s.management_host, self.ports.management, s.model_repository,
        )  # fmt: skip
        await self.manager.load_all()
        self.metrics.set_known_models(self.manager.names(), self.manager.versions())
        await self.rollouts.safe_tick()  # resume rollouts recorded in the repository before serving
        await health.refresh()
        log.info("modelgate ready: %d model version(s) ready", sum(v.ready for v in self.manager.all_versions()))
        health_task = asyncio.create_task(self._health_loop())
        rollout_task = asyncio.create_task(self.rollouts.run())
        await self._stop.wait()
        health_task.cancel()
        rollout_task.cancel()
        log.info("modelgate draining (grace %.0f s)", s.shutdown_grace_seconds)
        await health.enter_graceful_shutdown()
        http.should_exit = True
        await asyncio.gather(grpc_server.stop(s.shutdown_grace_seconds), tasks[0])
        metrics.should_exit = True
        management.should_exit = True
        await asyncio.gather(tasks[1], tasks[2])
        await self.rollouts.close()
        await self.dataplane.shadow.drain()
        await self.manager.unload_all()
        log.info("modelgate stopped")

    async def _health_loop(self) -> None:
        """Feed backend health into per-model readiness until shutdown."""
        while True:
            await asyncio.sleep(self.settings.health_check_seconds)
            await self.manager.check_health()

    def _uvicorn_config(self, app: object) -> uvicorn.Config:
        return uvicorn.Config(
            app,  # type: ignore[arg-type]
            lifespan="off",
            http="httptools",
            log_level=self.settings.log_level,
            access_log=self.settings.access_log,
            timeout_graceful_shutdown=int(self.settings.shutdown_grace_seconds),
            timeout_keep_alive=30,
            server_header=False,
        )

    def _on_state(self, served: ServedVersion) -> None:
        self.metrics.set_model_state(served.model, served.version, served.state.value, _STATES)
        if served.config is not None and served.config.backend is not None:
            up = 1 if served.ready else 0
            self.metrics.backend_up.labels(served.model, str(served.version), served.config.backend).set(up)
        if served.gate is not None:
            gate = served.gate
            self.metrics.queue_depth.labels(served.model, str(served.version)).set_function(lambda: gate.depth)


def run_until_signal(gateway: Gateway) -> None:
    """Serve on a uvloop event loop until SIGTERM or SIGINT, then drain and return."""
    import signal

    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gateway.stop)
        await gateway.run()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
