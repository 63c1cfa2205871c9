"""The gateway's own TorchServes: one locked-down TorchServe process per managed model version.

Why one process per version: the managed TorchServe runs with its model API off (issue 9,
ShellTorch), so nothing can be registered into a running TorchServe; archives are loaded at
start. A version loaded later therefore gets a TorchServe of its own instead of a restart of
a shared one with the full archive set, which would interrupt every other version for the
3-5 s of a TorchServe start. The cost is one JVM per version (docs/torchserve.md has the
measured memory and start time).

:class:`ManagedTorchServe` owns the run directory (``modelgate-torchserve-*`` in the temp
directory, with an owner file; stale ones are cleaned when the first one is made) and creates
one :class:`ManagedModel` per version in a subdirectory. Each :class:`ManagedModel` packages
its version into a .mar, starts its :class:`TorchServeProcess` with it and waits until the
worker is READY.

If the Java process dies, the next health check (``is_ready``) notices, answers "not ready"
and starts a restart in a background thread: the same ports are reused when possible so
clients' URLs stay valid. Restarts are bounded: after ``max_restart_attempts`` consecutive
failed starts it gives up (the version stays not ready; the reason is logged with
TorchServe's log tail). The health check also renews the keys before they expire.

Blocking work (process start/stop, packaging) runs in threads and is guarded by a threading
lock, so the supervision is not tied to one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import threading
import time
from pathlib import Path

import httpx

from gateway.backends.torchserve.package import archive
from gateway.backends.torchserve.process import DEFAULT_START_TIMEOUT, TorchServeOptions, TorchServeProcess
from gateway.backends.torchserve.rundir import claim, make_run_dir
from gateway.backends.torchserve.tokens import ManagedKeys
from gateway.core.errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

#: Waiting for the version's worker to be READY after start (1.7-2.4 s measured, more when loaded).
READY_TIMEOUT = 120.0


class ManagedModel:
    """One model version in its own TorchServe process."""

    def __init__(self, name: str, directory: Path, options: TorchServeOptions, max_restart_attempts: int) -> None:
        self.name = name
        self.process = TorchServeProcess(options)
        self.max_restart_attempts = max_restart_attempts
        self.restarts = 0
        self.gave_up = False
        self.directory = directory
        self._lock = threading.Lock()  # process start/stop (held for seconds: never on the event loop)
        self._state_lock = threading.Lock()  # the restarter's bookkeeping (held briefly)
        self._restarter: threading.Thread | None = None
        self._stopped = False

    @property
    def inference_url(self) -> str:
        return self.process.inference_url

    @property
    def management_url(self) -> str:
        return self.process.management_url

    @property
    def keys(self) -> ManagedKeys:
        keys = self.process.keys
        if keys is None:
            raise BackendUnavailable(f"the managed TorchServe of {self.name!r} is not running")
        return keys

    def start(self) -> None:
        """Start TorchServe with this version's archive and wait until its worker is READY (blocking)."""
        with self._lock:
            self._start(reuse_ports=False)

    def stop(self) -> None:
        """Stop TorchServe by PID (blocking); waits for a running restart first."""
        self._stopped = True
        restarter = self._restarter
        if restarter is not None:
            restarter.join()
        with self._lock:
            self.process.stop()

    async def is_ready(self, timeout: float) -> bool:
        """Whether TorchServe runs and has a READY worker; a dead one is restarted, old keys renewed."""
        if not self.process.alive():
            self._restart_in_background()
            return False
        if self._restarter is not None and self._restarter.is_alive():
            return False
        keys = self.keys
        if keys.stale():
            try:
                await asyncio.to_thread(keys.renew)
            except BackendUnavailable as exc:
                log.warning("TorchServe %s: %s", self.name, exc)
                return False
        return await model_has_ready_worker(self.management_url, self.name, timeout, keys.management_header())

    async def renew_keys(self, seen: str) -> None:
        """After a refused call: renew unless the inference key changed since ``seen`` (its header)."""
        keys = self.keys
        if keys.inference_header() != seen:
            return
        snapshot = keys.keys
        await asyncio.to_thread(keys.renew, snapshot)

    def _start(self, reuse_ports: bool) -> None:
        self.process.start(reuse_ports=reuse_ports)
        try:
            self._wait_ready()
        except BaseException:
            self.process.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        url = f"{self.management_url}/models/{self.name}"
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if not self.process.alive():
                    raise BackendUnavailable(f"TorchServe for {self.name!r} exited:\n{self.process.log_tail()}")
                if self.keys.stale():
                    self.keys.renew()
                try:
                    response = client.get(url, headers={"Authorization": self.keys.management_header()})
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 404:
                    model_log = self.directory / "logs" / "model_log.log"
                    raise ConfigError(f"TorchServe could not load {self.name!r}; model log: {model_log}")
                if response is not None and response.status_code == 200 and _has_ready_worker(response):
                    return
                time.sleep(0.1)  # polling interval, bounded by the deadline above
        raise ConfigError(
            f"TorchServe's worker for {self.name!r} was not READY within {READY_TIMEOUT:g} s; "
            f"model log: {self.directory / 'logs' / 'model_log.log'}"
        )

    def _restart_in_background(self) -> None:
        with self._state_lock:
            if self.gave_up or self._stopped or (self._restarter is not None and self._restarter.is_alive()):
                return
            self._restarter = threading.Thread(target=self._restart, name=f"torchserve-restart-{self.name}",
                                               daemon=True)  # fmt: skip
            self._restarter.start()

    def _restart(self) -> None:
        with self._lock:
            for attempt in range(1, self.max_restart_attempts + 1):
                if self._stopped or self.process.alive():
                    return
                log.warning("TorchServe %s (pid %s) is not running; restart attempt %d",
                            self.name, self.process.pid, attempt)  # fmt: skip
                try:
                    self.process.stop()
                    self._start(reuse_ports=attempt == 1)
                except (BackendUnavailable, ConfigError) as exc:
                    log.error("TorchServe %s restart attempt %d failed: %s", self.name, attempt, exc)
                    continue
                self.restarts += 1
                log.warning("TorchServe %s restarted (pid %s)", self.name, self.process.pid)
                return
            self.gave_up = True
            log.error("TorchServe %s could not be restarted after %d attempts; giving up",
                      self.name, self.max_restart_attempts)  # fmt: skip


class ManagedTorchServe:
    """Owns the run directory and one :class:`ManagedModel` (TorchServe process) per model version."""

    def __init__(
        self,
        run_dir: Path | None = None,
        heap_mb: int = 512,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        max_restart_attempts: int = 3,
        token_expiration_min: float = 60.0,
    ) -> None:
        self._run_dir = run_dir
        self._root: Path | None = None
        self._heap_mb = heap_mb
        self._start_timeout = start_timeout
        self._token_expiration_min = token_expiration_min
        self.max_restart_attempts = max_restart_attempts
        self._lock = threading.Lock()
        self.models: dict[str, ManagedModel] = {}

    @property
    def root(self) -> Path:
        """The run directory; a fresh temp dir (stale ones cleaned first) unless one was given."""
        if self._root is None:
            if self._run_dir is not None:
                self._run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                claim(self._run_dir)
                self._root = self._run_dir
            else:
                self._root = make_run_dir()
        return self._root

    def start_model(self, base_name: str, version: int, serialized_file: Path, workers: int) -> ManagedModel:
        """Package one version and start its TorchServe; returns it once its worker is READY (blocking)."""
        with self._lock:
            name = self._unique_name(f"{_safe(base_name)}_v{version}")
            directory = self.root / name
            options = TorchServeOptions(
                directory, models={name: f"{name}.mar"}, heap_mb=self._heap_mb, workers_per_model=workers,
                start_timeout=self._start_timeout, token_expiration_min=self._token_expiration_min,
            )  # fmt: skip
            model = ManagedModel(name, directory, options, self.max_restart_attempts)
            self.models[name] = model
        try:
            directory.mkdir(mode=0o700, parents=True)
            archive(serialized_file, name, str(version), model.process.model_store)
            model.start()
        except BaseException:
            self.stop_model(model)
            raise
        return model

    def stop_model(self, model: ManagedModel) -> None:
        """Stop the version's TorchServe and remove its directory (blocking); the last one removes the root."""
        model.stop()
        shutil.rmtree(model.directory, ignore_errors=True)
        with self._lock:
            self.models.pop(model.name, None)
            if not self.models and self._run_dir is None and self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def _unique_name(self, wanted: str) -> str:
        name, n = wanted, 1
        while name in self.models:
            n += 1
            name = f"{wanted}-{n}"
        return name


def _safe(name: str) -> str:
    """A model name usable as a TorchServe model name and a directory name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] or "model"


async def model_has_ready_worker(management_url: str, name: str, timeout: float, authorization: str | None) -> bool:
    """``GET /models/<name>``: true when at least one worker is READY."""
    headers = {"Authorization": authorization} if authorization else {}
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{management_url}/models/{name}", headers=headers)
    except (TimeoutError, httpx.HTTPError):
        return False
    return response.status_code == 200 and _has_ready_worker(response)


def _has_ready_worker(response: httpx.Response) -> bool:
    try:
        described = response.json()
        return any(w.get("status") == "READY" for m in described for w in m.get("workers", []))
    except (ValueError, AttributeError, TypeError):
        return False
