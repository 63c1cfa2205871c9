"""Backends whose framework runs in a separate worker process, supervised and restarted.

Why a process: TensorFlow costs ~0.6 GB and seconds to import, grows memory on its own
schedule and can abort the whole process on a bad kernel. In a worker, none of that can
take the gateway down, and the gateway process never imports the framework.

Shape of it: one worker process per model version (simplest to reason about: a crash
affects exactly one version, and unloading a version frees all its memory). The gateway
talks to it over a Unix socketpair with asyncio streams, so the event loop never blocks;
requests carry ids and several are in flight at once (:mod:`gateway.backends.worker.wire` frames).

When the worker dies (EOF on the socket), every in-flight request fails at once with
:class:`BackendUnavailable` (503), :meth:`health` turns False (the model manager marks the
version not ready at its next health check), and a supervisor task starts a new worker
after a backoff of ``0.5 s * 2**n`` (capped at 10 s), where ``n`` counts restarts inside the
last ``restart_window_seconds``. After ``max_restarts`` restarts in that window it gives up
and the version stays not ready until the gateway reloads it.

Recycling: with ``max_worker_rss_mb`` set, the supervisor reads the worker's resident memory
every ``memory_check_seconds``; a worker over the bound is replaced without failing a request:
a new worker is started and loads the model while the old one keeps serving, traffic
switches to the new one, the old one finishes the requests it holds (drain), then stops.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gateway.backends.worker import wire
from gateway.backends.worker.keeper import child_env
from gateway.core.backend import Backend, ModelVersionSource
from gateway.core.errors import BackendUnavailable, ConfigError
from gateway.core.signature import merge_signature
from gateway.core.types import Signature

log = logging.getLogger("modelgate.worker")

#: A decoded frame: its JSON header and its tensors by name.
_Frame = tuple[dict[str, Any], dict[str, np.ndarray]]
_STOP_GRACE_SECONDS = 5.0
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class WorkerParameters(BaseModel):
    """Worker-process options shared by every process-isolated backend's ``parameters:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker_threads: Annotated[int, Field(ge=1, description="Requests run in parallel inside the worker.")] = 2
    load_timeout_seconds: Annotated[
        float, Field(gt=0, description="How long the worker may take to import the framework and load.")
    ] = 300.0
    max_restarts: Annotated[
        int, Field(ge=0, description="Restarts allowed within restart_window_seconds before giving up.")
    ] = 5
    restart_window_seconds: Annotated[float, Field(gt=0, description="Window for counting restarts.")] = 300.0
    max_worker_rss_mb: Annotated[
        float | None,
        Field(
            gt=0, description="Resident memory (MB) over which the worker is replaced by a fresh one; unset = never."
        ),
    ] = None
    memory_check_seconds: Annotated[
        float, Field(gt=0, description="How often the worker's memory is compared with max_worker_rss_mb.")
    ] = 10.0
    drain_timeout_seconds: Annotated[
        float, Field(gt=0, description="How long a replaced worker may take to finish the requests it holds.")
    ] = 60.0


class WorkerProcess:
    """One running worker: the child process, its socket, and the requests waiting on it."""

    def __init__(self, label: str, process: subprocess.Popen[bytes], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:  # fmt: skip
        self.label = label
        self.process = process
        self.signature: Signature | None = None
        self._reader = reader
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[_Frame]] = {}
        self._ids = itertools.count(1)
        self._closed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._reader_task: asyncio.Task[None] | None = None
        self.exit_code: int | None = None

    @classmethod
    async def start(cls, label: str, runtime: str, spec: Mapping[str, Any], params: WorkerParameters) -> WorkerProcess:
        """Spawn the worker and wait until it has loaded its model (ConfigError if it cannot)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(  # our own interpreter and module, no shell
                _command(child.fileno(), runtime, spec, params.worker_threads),
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                env=_worker_env(),
                # own session: a terminal's Ctrl-C reaches only the gateway, which drains
                # in-flight requests before it closes the socket (and so stops the worker)
                start_new_session=True,
            )
        except OSError as exc:
            parent.close()
            raise ConfigError(f"{label}: cannot start a worker process: {exc}") from None
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker = cls(label, process, reader, writer)
        try:
            await worker._handshake(params.load_timeout_seconds)
        except BaseException:
            await worker.stop()
            raise
        worker._reader_task = asyncio.create_task(worker._read_loop(), name=f"worker-reader-{label}")
        return worker

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def call(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Send one request and wait for its reply; BackendUnavailable if the worker is gone."""
        if self.closed:
            raise BackendUnavailable(f"{self.label}: the worker process is not running")
        request_id = next(self._ids)
        future: asyncio.Future[_Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._idle.clear()
        try:
            frame = wire.encode_frame({"id": request_id, "op": "infer", "outputs": list(outputs)}, inputs)
            await self._send(frame)
            header, tensors = await future
        finally:
            self._pending.pop(request_id, None)
            if not self._pending:
                self._idle.set()
            if future.done() and not future.cancelled():
                future.exception()  # failed while sending: mark the reader's error as seen
        if header.get("op") == "error":
            raise wire.error_from_header(header)
        return tensors

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def drain(self, timeout: float) -> bool:
        """Wait until no request is in flight (bounded); whether it drained."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def rss_mb(self) -> float | None:
        """Resident memory of the worker process in MB (None once it is gone)."""
        try:
            resident = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return None
        return resident * _PAGE_SIZE / 2**20

    async def stop(self) -> None:
        """Close the socket (the worker exits on EOF), then terminate it if it lingers."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        if self._reader_task is not None:
            await self._reader_task
        self.exit_code = await asyncio.to_thread(_reap, self.process)
        self._fail_pending()

    async def _send(self, frame: bytes) -> None:
        try:
            async with self._write_lock:
                self._writer.write(frame)
                await self._writer.drain()
        except (ConnectionError, OSError):
            raise BackendUnavailable(f"{self.label}: the worker process closed its connection") from None

    async def _read_frame(self) -> _Frame | None:
        try:
            prefix = await self._reader.readexactly(wire.PREFIX_SIZE)
            body = await self._reader.readexactly(wire.frame_length(prefix))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return None
        return wire.decode_body(body)

    async def _handshake(self, timeout: float) -> None:
        try:
            hello = await asyncio.wait_for(self._read_frame(), timeout)
        except TimeoutError:
            raise ConfigError(f"{self.label}: the worker did not load the model within {timeout:g} s") from None
        if hello is None:
            code = await asyncio.to_thread(_reap, self.process)
            raise ConfigError(f"{self.label}: the worker process exited (code {code}) before loading the model")
        header, _ = hello
        if header.get("op") != "ready":
            raise ConfigError(f"{self.label}: {header.get('message', 'the worker failed to load the model')}")
        self.signature = wire.signature_from_json(header["signature"])

    async def _read_loop(self) -> None:
        try:
            while (frame := await self._read_frame()) is not None:
                future = self._pending.get(int(frame[0].get("id", -1)))
                if future is not None and not future.done():
                    future.set_result(frame)
        except (ValueError, KeyError) as exc:  # a malformed frame: treat the worker as broken
            log.error("%s: unreadable frame from the worker (%s); restarting it", self.label, exc)
            self._writer.close()
        finally:
            self._closed.set()
            self._fail_pending()

    def _fail_pending(self) -> None:
        self._closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BackendUnavailable(f"{self.label}: the worker process exited during the request"))
        self._pending.clear()
        self._idle.set()


class WorkerBackend(Backend):
    """A backend served by a supervised worker process; subclasses name the runtime and its spec."""

    #: ``module:factory`` of the :class:`gateway.backends.worker.main.WorkerRuntime` to run.
    runtime: ClassVar[str]

    def __init__(self, source: ModelVersionSource) -> None:
        super().__init__(source)
        self._worker: WorkerProcess | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._restart_times: list[float] = []
        self._restart_count = 0
        self._recycle_count = 0
        self._stopping = False

    @property
    @abc.abstractmethod
    def worker_parameters(self) -> WorkerParameters:
        """The validated worker options from ``parameters:``."""

    @abc.abstractmethod
    def worker_spec(self) -> dict[str, Any]:
        """JSON-serialisable arguments for the runtime factory (artifact path, options)."""

    @property
    def worker_pid(self) -> int | None:
        """PID of the live worker process, or None while it is down or restarting."""
        worker = self._worker
        return worker.pid if worker is not None and not worker.closed else None

    @property
    def restarts(self) -> int:
        """How many times the worker was restarted after a crash (since load)."""
        return self._restart_count

    @property
    def recycles(self) -> int:
        """How many times the worker was replaced for exceeding ``max_worker_rss_mb`` (since load)."""
        return self._recycle_count

    @property
    def supervised(self) -> bool:
        """False once the restart budget is spent: the version stays down until reloaded."""
        return self._supervisor is not None and not self._supervisor.done()

    async def load_impl(self) -> Signature:
        self._stopping = False
        self._restart_count = 0
        self._recycle_count = 0
        worker = await self._spawn()
        assert worker.signature is not None
        self._worker = worker
        self._supervisor = asyncio.create_task(self._supervise(), name=f"worker-supervisor-{self._label}")
        return merge_signature(self.source.name, self.source.config, worker.signature)

    async def infer_impl(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        worker = self._worker
        if worker is None or worker.closed:
            raise BackendUnavailable(f"{self._label}: the worker process is restarting")
        return await worker.call(inputs, outputs)

    async def health_impl(self) -> bool:
        worker = self._worker
        return worker is not None and not worker.closed

    async def unload_impl(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None

    @property
    def _label(self) -> str:
        return f"model {self.source.name!r} version {self.source.version} ({self.name})"

    async def _spawn(self) -> WorkerProcess:
        return await WorkerProcess.start(self._label, self.runtime, self.worker_spec(), self.worker_parameters)

    async def _supervise(self) -> None:
        """Wait for the worker to die (restart it within the restart budget) or outgrow its memory bound."""
        while self._worker is not None:
            worker = self._worker
            died = await self._watch(worker)
            if self._stopping:
                return
            if not died:
                await self._recycle(worker)
                continue
            await worker.stop()
            log.warning("%s: worker pid %d exited with code %s", self._label, worker.pid, worker.exit_code)
            self._worker = await self._restart()

    async def _watch(self, worker: WorkerProcess) -> bool:
        """Return True when ``worker`` died, False when it is over ``max_worker_rss_mb``."""
        params = self.worker_parameters
        if params.max_worker_rss_mb is None:
            await worker.wait_closed()
            return True
        while True:
            try:
                async with asyncio.timeout(params.memory_check_seconds):
                    await worker.wait_closed()
                return True
            except TimeoutError:
                rss = worker.rss_mb()
                if rss is not None and rss > params.max_worker_rss_mb:
                    log.warning("%s: worker pid %d uses %.0f MB, over max_worker_rss_mb %g; replacing it",
                                self._label, worker.pid, rss, params.max_worker_rss_mb)  # fmt: skip
                    return False

    async def _recycle(self, old: WorkerProcess) -> None:
        """Start a new worker while ``old`` serves, switch to it, drain ``old``, stop it."""
        params = self.worker_parameters
        try:
            new = await self._spawn()
        except ConfigError as exc:
            log.error("%s: could not start a replacement worker (%s); keeping pid %d", self._label, exc, old.pid)
            return
        if old.closed:  # died while the new one loaded: the new one simply takes over
            await old.stop()
            self._worker = new
            return
        self._worker = new  # new requests go to the new worker from here on
        try:
            if not await old.drain(params.drain_timeout_seconds):
                log.warning("%s: worker pid %d still had requests after %g s; stopping it",
                            self._label, old.pid, params.drain_timeout_seconds)  # fmt: skip
        finally:
            await old.stop()
        self._recycle_count += 1  # counted once the old worker is gone
        log.info("%s: worker pid %d replaced by pid %d", self._label, old.pid, new.pid)
        rss = new.rss_mb()
        if rss is not None and params.max_worker_rss_mb is not None and rss > params.max_worker_rss_mb:
            log.warning("%s: the new worker already uses %.0f MB right after loading, over max_worker_rss_mb %g",
                        self._label, rss, params.max_worker_rss_mb)  # fmt: skip

    async def _restart(self) -> WorkerProcess | None:
        params = self.worker_parameters
        while True:
            now = time.monotonic()
            self._restart_times = [t for t in self._restart_times if now - t < params.restart_window_seconds]
            if len(self._restart_times) >= params.max_restarts:
                log.error("%s: %d restarts within %.0f s; giving up until the model is reloaded",
                          self._label, len(self._restart_times), params.restart_window_seconds)  # fmt: skip
                return None
            await asyncio.sleep(min(0.5 * 2 ** len(self._restart_times), 10.0))
            self._restart_times.append(time.monotonic())
            try:
                worker = await self._spawn()
            except ConfigError as exc:
                log.error("%s: restart failed: %s", self._label, exc)
                continue
            self._restart_count += 1
            log.info("%s: worker restarted as pid %d", self._label, worker.pid)
            return worker


def _command(fd: int, runtime: str, spec: Mapping[str, Any], threads: int) -> list[str]:
    return [
        sys.executable, "-m", "gateway.backends.worker.main",
        "--fd", str(fd), "--runtime", runtime, "--spec", json.dumps(dict(spec)), "--threads", str(threads),
        "--parent-pid", str(os.getpid()),
    ]  # fmt: skip


def _worker_env() -> dict[str, str]:
    """The gateway's environment, with the gateway package importable and TF's C++ logging quieter."""
    env = child_env()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _reap(process: subprocess.Popen[bytes]) -> int:
    """Wait for the worker to exit, terminating then killing it if it does not."""
    try:
        return process.wait(timeout=_STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.terminate()
    try:
        return process.wait(timeout=_STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
