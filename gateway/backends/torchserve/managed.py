"""The gateway's own TorchServe: one process shared by every managed torchserve model version.

Lifecycle is lease-counted: the first version to load starts TorchServe, the last to
unload stops it (by PID), so ``modelgate serve`` leaves nothing running. Each version is
packaged into a .mar under the run directory and registered as ``<model>_v<version>``.

If the Java process dies, the next health check (``is_ready``) notices, answers "not
ready" and starts a restart in a background thread: the same ports are reused when
possible so clients' URLs stay valid, then every model is registered again. Restarts
are bounded: after ``max_restart_attempts`` consecutive failed starts the supervisor
gives up (models stay not ready; the reason is logged with TorchServe's log tail).

Blocking work (process start/stop, packaging, registration) runs in threads and is
guarded by a threading lock, so the supervisor is not tied to one event loop.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.backends.torchserve.package import archive
from gateway.backends.torchserve.process import DEFAULT_START_TIMEOUT, TorchServeOptions, TorchServeProcess
from gateway.core.errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

#: Synchronous registration waits for the worker to be READY (1.7-2.4 s measured, more when loaded).
REGISTER_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class _Registration:
    mar: str
    workers: int


class ManagedTorchServe:
    """Owns one :class:`TorchServeProcess` and the models registered in it."""

    def __init__(
        self,
        run_dir: Path | None = None,
        heap_mb: int = 512,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        max_restart_attempts: int = 3,
    ) -> None:
        self._run_dir = run_dir
        self._heap_mb = heap_mb
        self._start_timeout = start_timeout
        self._process: TorchServeProcess | None = None
        self.max_restart_attempts = max_restart_attempts
        self.restarts = 0
        self.gave_up = False
        self._lock = threading.Lock()
        self._leases = 0
        self._models: dict[str, _Registration] = {}
        self._restarter: threading.Thread | None = None

    @property
    def process(self) -> TorchServeProcess:
        """The process handle; its run directory (a temp dir unless given) is made on first use."""
        if self._process is None:
            directory = self._run_dir or Path(tempfile.mkdtemp(prefix="modelgate-torchserve-"))
            options = TorchServeOptions(directory, heap_mb=self._heap_mb, start_timeout=self._start_timeout)
            self._process = TorchServeProcess(options)
        return self._process

    @property
    def inference_url(self) -> str:
        return self.process.inference_url

    @property
    def management_url(self) -> str:
        return self.process.management_url

    # -- leases ---------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take a lease, starting TorchServe if this is the first (blocking)."""
        with self._lock:
            self._leases += 1
            if not self.process.alive():
                try:
                    self.process.start()
                except BackendUnavailable:
                    self._leases -= 1
                    raise

    def release(self) -> None:
        """Drop a lease; the last one stops TorchServe by PID (blocking)."""
        restarter = self._restarter
        if restarter is not None:
            restarter.join()
        with self._lock:
            self._leases -= 1
            if self._leases > 0:
                return
            self.process.stop()
            self._models.clear()
            if self._run_dir is None:
                shutil.rmtree(self.process.options.run_dir, ignore_errors=True)
                self._process = None

    # -- models ---------------------------------------------------------------------------

    def add_model(self, base_name: str, version: int, serialized_file: Path, workers: int) -> str:
        """Package and register one version; returns its TorchServe model name (blocking)."""
        with self._lock:
            name = self._unique_name(f"{base_name}_v{version}")
            mar = archive(serialized_file, name, str(version), self.process.model_store)
            self._register(name, _Registration(mar.name, workers))
            self._models[name] = _Registration(mar.name, workers)
            return name

    def remove_model(self, name: str) -> None:
        """Unregister (best effort: TorchServe may already be gone) and forget it (blocking)."""
        with self._lock:
            self._models.pop(name, None)
            if self.process.alive():
                with contextlib.suppress(httpx.HTTPError):
                    httpx.delete(f"{self.management_url}/models/{name}", timeout=30.0)
                with contextlib.suppress(OSError):
                    (self.process.model_store / f"{name}.mar").unlink()

    async def is_ready(self, name: str, timeout: float) -> bool:
        """Whether TorchServe runs and ``name`` has a READY worker; a dead process gets restarted."""
        if not self.process.alive():
            self._restart_in_background()
            return False
        if self._restarter is not None and self._restarter.is_alive():
            return False
        return await model_has_ready_worker(self.management_url, name, timeout)

    # -- internals ------------------------------------------------------------------------

    def _unique_name(self, wanted: str) -> str:
        name, n = wanted, 1
        while name in self._models:
            n += 1
            name = f"{wanted}-{n}"
        return name

    def _register(self, name: str, reg: _Registration) -> None:
        params: dict[str, str | int] = {
            "url": reg.mar,
            "model_name": name,
            "initial_workers": reg.workers,
            "synchronous": "true",
        }
        try:
            response = httpx.post(f"{self.management_url}/models", params=params, timeout=REGISTER_TIMEOUT)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"cannot register {name} with TorchServe: {exc}") from None
        if response.status_code != 200:
            raise ConfigError(
                f"TorchServe refused to register {name} ({response.status_code}: {_message(response)}); "
                f"model log: {self.process.options.run_dir / 'logs' / 'model_log.log'}"
            )

    def _restart_in_background(self) -> None:
        with self._lock:
            if self.gave_up or self._leases == 0 or (self._restarter is not None and self._restarter.is_alive()):
                return
            self._restarter = threading.Thread(target=self._restart, name="torchserve-restart", daemon=True)
            self._restarter.start()

    def _restart(self) -> None:
        with self._lock:
            for attempt in range(1, self.max_restart_attempts + 1):
                log.warning("TorchServe (pid %s) is not running; restart attempt %d", self.process.pid, attempt)
                try:
                    self.process.stop()
                    self.process.start(reuse_ports=attempt == 1)
                    for name, reg in self._models.items():
                        self._register(name, reg)
                except (BackendUnavailable, ConfigError) as exc:
                    log.error("TorchServe restart attempt %d failed: %s", attempt, exc)
                    continue
                self.restarts += 1
                log.warning(
                    "TorchServe restarted (pid %s), %d model(s) registered", self.process.pid, len(self._models)
                )
                return
            self.gave_up = True
            log.error("TorchServe could not be restarted after %d attempts; giving up", self.max_restart_attempts)


async def model_has_ready_worker(management_url: str, name: str, timeout: float) -> bool:
    """``GET /models/<name>``: true when at least one worker is READY."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{management_url}/models/{name}")
    except (TimeoutError, httpx.HTTPError):
        return False
    if response.status_code != 200:
        return False
    try:
        described = response.json()
    except ValueError:
        return False
    return any(w.get("status") == "READY" for m in described for w in m.get("workers", []))


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)
