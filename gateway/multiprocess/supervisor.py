"""The supervisor of ``modelgate serve --workers N``: reserves the ports, starts N serving processes,
replaces any that dies, and stops them all on SIGTERM/SIGINT.

It is one thread and imports no web framework: it only reserves ports, starts processes and waits.
Each worker asks the kernel to SIGKILL it when the supervisor dies (``PR_SET_PDEATHSIG``, see
:func:`gateway.backends.worker.keeper.die_with_parent`), so SIGKILL of the supervisor leaves no
worker; each worker's own backend processes end with it by the same machinery.

The run directory (``<tmp>/modelgate-workers-XXXX``, 0700, owned by the supervisor's PID) holds
the resolved settings (without the management token, which the workers get in their environment),
the readiness board and prometheus_client's multiprocess files; it is
removed on exit, and a later gateway removes one whose supervisor died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.backends.torchserve.rundir import make_run_dir
from gateway.backends.worker.keeper import child_env
from gateway.multiprocess.ports import reserve
from gateway.multiprocess.readiness import ReadinessBoard
from gateway.multiprocess.role import metrics_dir
from gateway.settings import Settings

log = logging.getLogger("modelgate")

RUN_DIR_PREFIX = "modelgate-workers-"
SETTINGS_FILE = "settings.json"
#: A worker that dies sooner than this after its start is restarted no faster than this.
RESTART_BACKOFF_SECONDS = 1.0


@dataclass(slots=True)
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0


@dataclass(slots=True)
class Supervisor:
    settings: Settings
    count: int
    run_dir: Path
    board: ReadinessBoard
    slots: list[_Slot] = field(default_factory=list)

    def spawn(self, slot: _Slot) -> None:
        self.board.clear(slot.index)
        command = [
            sys.executable, "-m", "gateway.multiprocess.child", "--index", str(slot.index), "--count",
            str(self.count), "--run-dir", str(self.run_dir), "--parent-pid", str(os.getpid()),
            *(["--replacement"] if slot.restarts else []),
        ]  # fmt: skip
        env = child_env({
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(self.run_dir)),
            "MODELGATE_MANAGEMENT_TOKEN": self.settings.token() or "",  # the one setting not written to disk
        })  # fmt: skip
        slot.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env)
        slot.started = time.monotonic()
        log.info("modelgate worker %d/%d started: pid %d", slot.index, self.count, slot.process.pid)

    def check(self) -> int | None:
        """Replace workers that ended; an exit code when the gateway must stop (a worker failed to start)."""
        for slot in self.slots:
            assert slot.process is not None
            code = slot.process.poll()
            if code is None:
                continue
            was_ready = self.board.was_ready(slot.index, slot.process.pid)  # read before the slot is cleared
            _forget(self.run_dir, slot.process.pid)
            self.board.clear(slot.index)
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            if not was_ready and slot.restarts == 0:
                log.error("modelgate worker %d/%d (pid %d) ended before it was ready (%s): stopping",
                          slot.index, self.count, slot.process.pid, how)  # fmt: skip
                return code if code > 0 else 1
            log.warning("modelgate worker %d/%d (pid %d) ended (%s): starting a replacement",
                        slot.index, self.count, slot.process.pid, how)  # fmt: skip
            if time.monotonic() - slot.started < RESTART_BACKOFF_SECONDS:
                time.sleep(RESTART_BACKOFF_SECONDS)  # a crash loop restarts once a second, not flat out
            slot.restarts += 1
            self.spawn(slot)
        return None

    def stop_all(self) -> None:
        """SIGTERM every worker (each drains within its grace), then SIGKILL what is left."""
        running = [s.process for s in self.slots if s.process is not None and s.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + 15
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("modelgate worker pid %d did not stop in time: SIGKILL", process.pid)
                process.kill()
                process.wait()


def _forget(run_dir: Path, pid: int) -> None:
    """prometheus_client bookkeeping for a dead worker: its live gauges stop counting (counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(metrics_dir(run_dir)))  # type: ignore[no-untyped-call]


def _write_settings(run_dir: Path, settings: Settings) -> None:
    doc = settings.model_dump(mode="json", exclude={"management_token"})  # passed in the environment
    path = run_dir / SETTINGS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle)


def read_settings(run_dir: Path) -> Settings:
    """The settings the supervisor resolved (concrete ports), for a worker (the token comes from the environment)."""
    doc = json.loads((run_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
    return Settings(**doc)


def _reserve_ports(settings: Settings) -> tuple[Settings, list[socket.socket]]:
    held: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        for name, host in (("http_port", settings.host), ("grpc_port", settings.host),
                           ("metrics_port", settings.host), ("management_port", settings.management_host)):  # fmt: skip
            sock = reserve(host, getattr(settings, name))
            held.append(sock)
            ports[name] = sock.getsockname()[1]
    except OSError:
        for sock in held:
            sock.close()
        raise
    return settings.model_copy(update=ports), held


def serve_workers(settings: Settings, count: int) -> int:
    """Run ``count`` serving processes until SIGTERM/SIGINT; the process exit code."""
    resolved, held = _reserve_ports(settings)
    run_dir = make_run_dir(prefix=RUN_DIR_PREFIX)
    try:
        metrics_dir(run_dir).mkdir()
        _write_settings(run_dir, resolved)
        supervisor = Supervisor(resolved, count, run_dir, ReadinessBoard(run_dir / "ready", count))
        return _run(supervisor)
    finally:
        for sock in held:
            sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def _run(supervisor: Supervisor) -> int:
    s = supervisor.settings
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    log.info(
        "modelgate listening: http=%s:%d grpc=%s:%d metrics=%s:%d management=%s:%d repository=%s tls=%s workers=%d",
        s.host, s.http_port, s.host, s.grpc_port, s.host, s.metrics_port, s.management_host, s.management_port,
        s.model_repository, "off" if s.tls_cert is None else ("mutual" if s.tls_client_ca else "on"),
        supervisor.count,
    )  # fmt: skip
    supervisor.slots = [_Slot(i) for i in range(supervisor.count)]
    code = 0
    try:
        for slot in supervisor.slots:
            supervisor.spawn(slot)
        while True:
            ready, _, _ = select.select([wake_r], [], [], 0.5)
            signals = os.read(wake_r, 64) if ready else b""
            if signal.SIGTERM in signals or signal.SIGINT in signals:
                log.info("modelgate supervisor stopping %d worker(s)", supervisor.count)
                break
            failed = supervisor.check()
            if failed is not None:
                code = failed
                break
    finally:
        supervisor.stop_all()
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)
    log.info("modelgate stopped")
    return code
