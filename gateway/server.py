"""Wiring: one event loop running the REST, gRPC and metrics servers over one data plane.

Start-up binds every port first (liveness answers at once, readiness is 503 until the
models are loaded), then loads the repository. ``stop()`` (SIGTERM/SIGINT) marks the
gateway not ready, stops accepting connections, lets in-flight requests complete within
``shutdown_grace_seconds``, then unloads the models.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
import uvicorn
from prometheus_client import make_asgi_app

from gateway.backends import default_registry
from gateway.backends.torchserve.rundir import clean_stale_run_dirs
from gateway.core.backend import BackendRegistry
from gateway.core.codec.limits import TensorLimits
from gateway.core.dataplane import DataPlane
from gateway.core.history import DeploymentHistory
from gateway.core.lifecycle import Lifecycle
from gateway.core.models import ModelManager
from gateway.core.repository import ModelRepository
from gateway.core.rollout.controller import RolloutController, replica_name
from gateway.metrics import FLUSH_SECONDS, Metrics, exposition_registry
from gateway.multiprocess import ports
from gateway.multiprocess.readiness import DRAINING, READY, ReadinessBoard
from gateway.multiprocess.role import LOCAL_OPS_REFUSED, WorkerRole
from gateway.protocols import PROTOCOLS
from gateway.protocols.grpc_server import GrpcLimits, RequestInterceptor, bounded_server_options
from gateway.protocols.http_app import HttpApp
from gateway.protocols.http_guard import ConnectionLimits, guarded_protocol
from gateway.protocols.http_server import HttpServer
from gateway.protocols.mounts import Hook, Mounts, ProtocolContext, mount_all
from gateway.settings import Settings
from gateway.tls import grpc_server_credentials, server_ssl_context
from gateway.tracing import tracer_for

log = logging.getLogger("modelgate")


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway stops all servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        self.should_exit = True


@dataclass(frozen=True, slots=True)
class BoundPorts:
    http: int
    grpc: int
    metrics: int
    management: int = 0


class Gateway:
    """The whole server process's contents; ``await run()`` serves until ``stop()``."""

    def __init__(
        self, settings: Settings, registry: BackendRegistry | None = None, protocols: Sequence[str] = PROTOCOLS,
        worker: WorkerRole | None = None,
        own_process: bool = False,
    ) -> None:  # fmt: skip
        """``own_process``: the gateway owns its process (``modelgate serve``), so it may tune the garbage
        collector, which is process-wide (``gc_freeze``, ``gc_gen0_threshold``); embedded, it leaves it."""
        self.settings = settings
        self.own_process = own_process
        #: One of several serving processes sharing the ports (``--workers``), or None: the only one.
        self.worker = worker
        self.board = None if worker is None else ReadinessBoard(worker.board_dir, worker.count)
        self.metrics = Metrics(multiprocess=worker is not None)
        self.manager = ModelManager(
            ModelRepository(settings.model_repository), registry or default_registry(), self.metrics,
            tracer=tracer_for(settings.otlp_endpoint),  # tracing: request spans over OTLP when configured
        )  # fmt: skip
        limits = TensorLimits(max_bytes=settings.max_tensor_bytes)
        self.dataplane = DataPlane(self.manager, self.metrics, limits,
                                   peers_ready=None if self.board is None else self.board.all_ready)  # fmt: skip
        self.protocols = tuple(protocols)
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

        s = self.settings
        clean_stale_run_dirs()  # TorchServe run directories left by a gateway that died (SIGKILL)
        ssl_context = None  # checked before anything binds: a bad certificate is a ConfigError
        if s.tls_cert is not None and s.tls_key is not None:
            ssl_context = server_ssl_context(s.tls_cert, s.tls_key, s.tls_client_ca)
        refused = None if self.worker is None else LOCAL_OPS_REFUSED
        api = ManagementApi(self.lifecycle, rollout_routes(self.rollouts), local_ops_refused=refused)
        control = control_plane(self.lifecycle, s.token(), api, local_ops_refused=refused)
        ctx = ProtocolContext(self.dataplane, self.metrics, s.max_request_bytes, control.repository)
        mounts = mount_all(ctx, self.protocols)
        # A replacement worker loads before it listens: on ports shared with SO_REUSEPORT the kernel would
        # hand it a share of new connections while its models load, and those requests would fail.
        load_first = self.worker is not None and self.worker.replacement
        if load_first:
            await self.manager.load_all()
        shared = self.worker is not None  # the ports are shared with the other workers (SO_REUSEPORT)
        http_sock = _bind(s.host, s.http_port, shared)
        metrics_sock = _bind(s.host, s.metrics_port, shared)
        management_sock = None
        try:
            if self.worker is None or self.worker.serves_management:
                management_sock = _bind(s.management_host, s.management_port, shared)
            grpc_server, grpc_port = self._grpc_server(mounts)
        except OSError:
            for sock in (http_sock, metrics_sock, management_sock):
                if sock is not None:
                    sock.close()
            raise
        management_port = s.management_port if management_sock is None else management_sock.getsockname()[1]
        self.ports = BoundPorts(http_sock.getsockname()[1], grpc_port, metrics_sock.getsockname()[1],
                                management_port)  # fmt: skip
        app = HttpApp(mounts.http_routes, mounts.http_fast_paths, access_log=s.access_log)
        http = self._rest_server(app, ssl_context)
        exposed = exposition_registry(self.metrics, None if self.worker is None else self.worker.metrics_dir)
        metrics = _UvicornServer(self._uvicorn_config(make_asgi_app(exposed), None))
        management = _UvicornServer(self._uvicorn_config(control.app, None))
        await grpc_server.start()
        tasks = [asyncio.create_task(http.serve([http_sock])), asyncio.create_task(metrics.serve([metrics_sock]))]
        if management_sock is not None:
            tasks.append(asyncio.create_task(management.serve([management_sock])))
        log.info(
            "modelgate %slistening: http=%s:%d grpc=%s:%d metrics=%s:%d management=%s:%d repository=%s tls=%s",
            self._who(), s.host, self.ports.http, s.host, self.ports.grpc, s.host, self.ports.metrics,
            s.management_host, self.ports.management, s.model_repository,
            "off" if s.tls_cert is None else ("mutual" if s.tls_client_ca else "on"),
        )  # fmt: skip
        if not load_first:
            await self.manager.load_all()  # the ports answer liveness (and queue clients) meanwhile
        await self.rollouts.safe_tick()  # resume rollouts recorded in the repository before serving
        self._publish(READY)
        await _call_all(mounts.on_ready)
        heap = tune_gc(s.gc_freeze, s.gc_gen0_threshold) if self.own_process else "garbage collector left as it is"
        log.info("modelgate %sready: %d model version(s) ready; %s", self._who(),
                 sum(v.ready for v in self.manager.all_versions()), heap)  # fmt: skip
        health_task = asyncio.create_task(self._health_loop())
        rollout_task = asyncio.create_task(self.rollouts.run())
        refresh_task = asyncio.create_task(self._refresh_loop()) if self.metrics.multiprocess else None
        await self._stop.wait()
        self._publish(DRAINING)
        health_task.cancel()
        rollout_task.cancel()
        if refresh_task is not None:
            refresh_task.cancel()
        log.info("modelgate %sdraining (grace %.0f s)", self._who(), s.shutdown_grace_seconds)
        await _call_all(mounts.on_drain)
        http.stop()
        await asyncio.gather(grpc_server.stop(s.shutdown_grace_seconds), tasks[0])
        metrics.should_exit = True
        management.should_exit = True
        await asyncio.gather(*tasks[1:])
        await self.rollouts.close()
        await self.dataplane.shadow.drain()
        await self.manager.unload_all()
        self.metrics.flush()  # workers: the last requests' series reach the shared files
        self.manager.tracer.close()  # tracing: flush buffered spans
        log.info("modelgate %sstopped", self._who())

    def _grpc_server(self, mounts: Mounts) -> tuple[grpc.aio.Server, int]:
        """A gRPC server with every mounted service, bound to the gRPC port (OSError if it cannot bind)."""
        s = self.settings
        limits = GrpcLimits(
            max_message_bytes=s.grpc_max_message_bytes,
            max_metadata_bytes=s.http_max_header_bytes,
            max_concurrent_streams=s.grpc_max_concurrent_streams,
            max_connection_age=s.grpc_max_connection_age_seconds,
            max_connection_age_grace=s.grpc_max_connection_age_grace_seconds,
            keepalive=s.grpc_keepalive_seconds,
            keepalive_timeout=s.grpc_keepalive_timeout_seconds,
            min_ping_interval=s.grpc_min_ping_interval_seconds,
            handshake_timeout=s.grpc_handshake_timeout_seconds,
        )
        server = grpc.aio.server(
            options=bounded_server_options(limits, reuse_port=self.worker is not None),
            interceptors=[RequestInterceptor(access_log=s.access_log)],
        )
        for install in mounts.grpc_services:
            install(server)
        address = f"{s.host}:{s.grpc_port}"
        try:
            if s.tls_cert is not None and s.tls_key is not None:
                port = server.add_secure_port(address, grpc_server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca))
            else:
                port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot bind gRPC port {address} (in use?)")
        return server, port

    def _who(self) -> str:
        return "" if self.worker is None else f"worker {self.worker.index}/{self.worker.count} "

    def _publish(self, state: str) -> None:
        """Workers: record this process's readiness where every worker reads it."""
        if self.board is not None and self.worker is not None:
            self.board.publish(self.worker.index, state)

    async def _refresh_loop(self) -> None:
        """Multiprocess metrics: store function-computed gauges (queue depth) and add the request-path
        series to the shared files every ``FLUSH_SECONDS`` (the scrape sums what the workers flushed)."""
        while True:
            self.metrics.flush()
            await asyncio.sleep(FLUSH_SECONDS)

    async def _health_loop(self) -> None:
        """Feed backend health into per-model readiness until shutdown."""
        while True:
            await asyncio.sleep(self.settings.health_check_seconds)
            await self.manager.check_health()

    def _rest_server(self, app: HttpApp, ssl_context: ssl.SSLContext | None) -> HttpServer | _UvicornServer:
        """The REST port's server: the gateway's own (``http_server: modelgate``) or uvicorn."""
        s = self.settings
        if s.http_server == "uvicorn":
            return _UvicornServer(self._uvicorn_config(app, ssl_context))
        return HttpServer(app, self._connection_limits(), s.http_keep_alive_seconds, s.shutdown_grace_seconds,
                          ssl_context)  # fmt: skip

    def _connection_limits(self) -> ConnectionLimits:
        s = self.settings
        return ConnectionLimits(
            header_timeout=s.http_header_timeout_seconds,
            body_timeout=s.http_body_timeout_seconds,
            max_header_bytes=s.http_max_header_bytes,
            max_connections=s.http_max_connections,
            write_timeout=s.http_write_timeout_seconds,
        )

    def _uvicorn_config(self, app: object, ssl_context: ssl.SSLContext | None) -> uvicorn.Config:
        s = self.settings
        return uvicorn.Config(
            app,  # type: ignore[arg-type]
            lifespan="off",
            http=guarded_protocol(self._connection_limits()),
            log_level=s.log_level,
            log_config=None,  # uvicorn's loggers go through the gateway's handler (text or JSON)
            access_log=False,  # the gateway writes its own access log (modelgate.access)
            timeout_graceful_shutdown=int(s.shutdown_grace_seconds),
            timeout_keep_alive=s.http_keep_alive_seconds,  # type: ignore[arg-type]
            server_header=False,
            proxy_headers=False,  # nothing reads the client address; do not trust X-Forwarded-For from anyone
            ssl_context_factory=None if ssl_context is None else (lambda _config, _default: ssl_context),
        )


def tune_gc(freeze: bool, gen0_threshold: int) -> str:
    """Settle the garbage collector for serving (``gc_freeze``, ``gc_gen0_threshold``); says what it did.

    Requests free almost everything they allocate by reference counting, so young collections mostly
    rescan the requests in flight (and promote them, which is what fills the oldest generation).
    """
    done = f"{freeze_heap()} start-up objects frozen (gc_freeze)" if freeze else "gc_freeze off"
    if gen0_threshold:
        gc.set_threshold(gen0_threshold, *gc.get_threshold()[1:])
    return f"{done}, young collections every {gc.get_threshold()[0]} allocations"


def freeze_heap() -> int:
    """Collect once, then exempt every surviving object from later collections (``gc.freeze``).

    The start-up heap (modules, protobuf descriptors, loaded models: ~75k objects) is never garbage;
    without this, every full collection scanned it and paused the event loop for tens of ms on a
    quiet machine and hundreds on a busy one. Objects created later (by requests, or by models
    loaded later) are collected as usual; garbage cycles among frozen objects are never freed.
    Returns how many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def _call_all(hooks: Sequence[Hook]) -> None:
    for hook in hooks:
        await hook()


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


def _bind(host: str, port: int, shared: bool = False) -> socket.socket:
    sock = ports.listening(host, port, reuse_port=shared)  # "listening" is logged before uvicorn's loop runs
    sock.set_inheritable(True)
    return sock
