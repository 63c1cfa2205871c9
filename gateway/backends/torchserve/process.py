"""Start and stop one TorchServe (Java frontend plus its Python workers) by PID.

The gateway runs the Java frontend itself instead of the ``torchserve --start``
launcher: the launcher forks Java and exits, leaving a PID file in the system temp
directory; running Java directly means the PID we hold is the server's, and the process
group we create (``start_new_session``) also holds the Python workers, so ``stop()``
leaves nothing behind even after Java was SIGKILLed.

Settings follow docs/torchserve.md (measured on this machine): token auth off, model API
on, 127.0.0.1 only, small serial-GC heap, Prometheus metrics, all temp files under the
run directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from gateway.core.errors import BackendUnavailable

#: Java's own start is ~3.4 s here; cold JIT on a loaded 2-core box can take several times that.
DEFAULT_START_TIMEOUT = 60.0
#: TorchServe's default request/response limit is 6.5 MB: too small for image batches.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TorchServePorts:
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    @classmethod
    def free(cls) -> TorchServePorts:
        """Five ports free right now on 127.0.0.1 (TorchServe cannot bind port 0 and report it)."""
        socks = [socket.socket() for _ in range(5)]
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
            ports = [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()
        return cls(*ports)


@dataclass(frozen=True, slots=True)
class TorchServeOptions:
    """What the managed process is started with."""

    run_dir: Path
    heap_mb: int = 512
    workers_per_model: int = 1
    start_timeout: float = DEFAULT_START_TIMEOUT
    #: Seconds TorchServe lets one prediction run before it restarts the worker.
    response_timeout: int = 120


class TorchServeProcess:
    """One TorchServe process; ``start()``/``stop()`` are blocking (run them off the event loop)."""

    def __init__(self, options: TorchServeOptions) -> None:
        self.options = options
        self.ports: TorchServePorts | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The Java frontend's PID while started (also its process group id)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def model_store(self) -> Path:
        return self.options.run_dir / "model_store"

    @property
    def log_path(self) -> Path:
        return self.options.run_dir / "torchserve.log"

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self._ports().inference}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self._ports().management}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self._ports().metrics}"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, reuse_ports: bool = False) -> None:
        """Start and wait (bounded) until ``/ping`` answers 200.

        ``reuse_ports`` keeps the previous ports (a restart keeps clients' URLs valid);
        otherwise fresh free ports are picked.
        """
        if self.alive():
            return
        self._reap_group()
        if not reuse_ports or self.ports is None:
            self.ports = TorchServePorts.free()
        for sub in ("model_store", "tmp", "logs"):
            (self.options.run_dir / sub).mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self._command(config),
            cwd=self.options.run_dir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ping()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the Java PID, SIGKILL it after ``timeout``, then clear its process group."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a SIGSTOPped JVM cannot act on SIGTERM
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._reap_group()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        """The end of TorchServe's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _reap_group(self) -> None:
        """Kill workers left in the previous process group (Java died without stopping them)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.poll()

    def _ports(self) -> TorchServePorts:
        if self.ports is None:
            raise BackendUnavailable("the managed TorchServe has not been started")
        return self.ports

    def _wait_ping(self) -> None:
        deadline = time.monotonic() + self.options.start_timeout
        url = f"{self.inference_url}/ping"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    self.stop()
                    raise BackendUnavailable(f"TorchServe exited during start-up:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                time.sleep(0.1)  # polling interval, bounded by the deadline above
        self.stop()
        raise BackendUnavailable(
            f"TorchServe did not answer /ping within {self.options.start_timeout:g} s:\n{self.log_tail()}"
        )

    def _write_config(self) -> Path:
        p = self._ports()
        run = self.options.run_dir
        lines = [
            f"inference_address=http://127.0.0.1:{p.inference}",
            f"management_address=http://127.0.0.1:{p.management}",
            f"metrics_address=http://127.0.0.1:{p.metrics}",
            "grpc_inference_address=127.0.0.1",
            "grpc_management_address=127.0.0.1",
            f"grpc_inference_port={p.grpc_inference}",
            f"grpc_management_port={p.grpc_management}",
            f"model_store={run / 'model_store'}",
            "install_py_dep_per_model=false",
            f"default_workers_per_model={self.options.workers_per_model}",
            f"default_response_timeout={self.options.response_timeout}",
            f"max_request_size={MAX_MESSAGE_BYTES}",
            f"max_response_size={MAX_MESSAGE_BYTES}",
            "metrics_mode=prometheus",
            "disable_token_authorization=true",
            "enable_model_api=true",
        ]
        path = run / "config.properties"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _command(self, config: Path) -> list[str]:
        ts_home = _ts_home()
        java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
        return [
            java,
            f"-Dmodel_server_home={ts_home}",
            f"-Djava.io.tmpdir={self.options.run_dir / 'tmp'}",
            f"-Xmx{self.options.heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:-UsePerfData",
            "-cp",
            f".:{ts_home / 'ts' / 'frontend' / '*'}",
            "org.pytorch.serve.ModelServer",
            "--python",
            sys.executable,
            "-f",
            str(config),
            "-s",
            str(self.model_store),
            "-ncs",
            "--disable-token-auth",
            "--enable-model-api",
        ]

    def _env(self) -> dict[str, str]:
        tmp = str(self.options.run_dir / "tmp")
        env = dict(os.environ)
        env.update(
            TMPDIR=tmp,
            TEMP=tmp,
            TORCHINDUCTOR_CACHE_DIR=str(self.options.run_dir / "inductor"),
            LOG_LOCATION=str(self.options.run_dir / "logs"),
            METRICS_LOCATION=str(self.options.run_dir / "logs"),
        )
        return env


def _ts_home() -> Path:
    """Where the ``ts`` package is installed, found without importing it (its import leaks a file handle)."""
    spec = importlib.util.find_spec("ts")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("TorchServe is not installed (pip install torchserve==0.12.0 pyyaml)")
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent
