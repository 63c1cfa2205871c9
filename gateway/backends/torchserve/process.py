"""Start and stop one locked-down TorchServe (Java frontend plus its Python workers).

The gateway runs the Java frontend itself, not the ``torchserve --start`` launcher (which
forks Java, exits and leaves a PID file in the system temp directory), under a **keeper**
(:mod:`gateway.backends.worker.keeper`): Java gets its own process group and dies with the
keeper; the keeper SIGKILLs the group (Java and its Python workers) when the gateway dies,
even by SIGKILL, because it watches a lifeline pipe only the gateway holds.

Locked down (issue 9): token authorization on (``key_file.json`` in the run directory, 0600,
keys renewed by :mod:`gateway.backends.torchserve.tokens`), the model API off (the archives
are loaded at start with ``load_models``, nothing can be registered at runtime),
``allowed_urls`` limited to its own model store, and all five ports (REST inference,
management, metrics, gRPC inference and management) on 127.0.0.1. Other settings follow
docs/torchserve.md (measured): small serial-GC heap, Prometheus metrics, all temp files
under the run directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from gateway.backends.torchserve.tokens import KEY_FILE, ManagedKeys
from gateway.backends.worker.keeper import Lifeline, child_env, keeper_command
from gateway.core.errors import BackendUnavailable, ConfigError

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
    #: TorchServe model name -> archive file name in ``<run_dir>/model_store``, loaded at start.
    models: dict[str, str] = field(default_factory=dict)
    heap_mb: int = 512
    workers_per_model: int = 1
    start_timeout: float = DEFAULT_START_TIMEOUT
    #: Seconds TorchServe lets one prediction run before it restarts the worker.
    response_timeout: int = 120
    #: TorchServe's ``token_expiration_min``: how long an inference or management key is valid.
    token_expiration_min: float = 60.0
    #: Seconds between SIGTERM and SIGKILL when stopping.
    stop_grace: float = 30.0


class TorchServeProcess:
    """One TorchServe process; ``start()``/``stop()`` are blocking (run them off the event loop)."""

    def __init__(self, options: TorchServeOptions) -> None:
        self.options = options
        self.ports: TorchServePorts | None = None
        self.keys: ManagedKeys | None = None
        self._keeper: subprocess.Popen[bytes] | None = None
        self._lifeline: Lifeline | None = None
        self._java_pid: int | None = None

    @property
    def pid(self) -> int | None:
        """The Java frontend's PID while started (also its process group id)."""
        return self._java_pid if self._keeper is not None else None

    @property
    def keeper_pid(self) -> int | None:
        return self._keeper.pid if self._keeper is not None else None

    @property
    def model_store(self) -> Path:
        return self.options.run_dir / "model_store"

    @property
    def log_path(self) -> Path:
        return self.options.run_dir / "torchserve.log"

    @property
    def key_file(self) -> Path:
        return self.options.run_dir / KEY_FILE

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
        """Whether Java runs (the keeper exits as soon as Java does)."""
        return self._keeper is not None and self._keeper.poll() is None and _running(self._java_pid)

    def start(self, reuse_ports: bool = False) -> None:
        """Start, read the keys and wait (bounded) until ``/ping`` answers 200.

        ``reuse_ports`` keeps the previous ports (a restart keeps clients' URLs valid);
        otherwise fresh free ports are picked.
        """
        if self.alive():
            return
        self.stop()
        _check_socket_path(self.options.run_dir / "tmp")
        if not reuse_ports or self.ports is None:
            self.ports = TorchServePorts.free()
        for sub in ("model_store", "tmp", "logs"):
            (self.options.run_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.key_file.unlink()  # the previous run's keys: wait for the new ones
        config = self._write_config()
        lifeline = Lifeline()
        try:
            self._keeper = subprocess.Popen(
                keeper_command(lifeline, self.log_path, self._command(config), self.options.stop_grace),
                cwd=self.options.run_dir, env=self._env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                pass_fds=[lifeline.read_fd], start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            lifeline.spawned()
            lifeline.cut()
            raise BackendUnavailable(f"cannot start TorchServe's keeper process: {exc}") from None
        lifeline.spawned()
        self._lifeline = lifeline
        deadline = time.monotonic() + self.options.start_timeout
        self._java_pid = self._read_java_pid(deadline)
        self.keys = ManagedKeys(self.key_file, self.management_url, self.options.token_expiration_min * 60)
        self._wait_ping(deadline)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM through the keeper (SIGTERM to Java, SIGKILL to its group after the grace), then reap."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            if keeper.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    keeper.terminate()
            try:
                keeper.wait((timeout or self.options.stop_grace) + 10.0)
            except subprocess.TimeoutExpired:
                keeper.kill()
                keeper.wait(10)
            if keeper.stdout is not None:
                keeper.stdout.close()
        if self._lifeline is not None:
            self._lifeline.cut()
            self._lifeline = None
        if self._java_pid is not None:  # belt and braces: nothing of the group survives a stop
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._java_pid, signal.SIGKILL)
            self._java_pid = None

    def log_tail(self, lines: int = 20) -> str:
        """The end of TorchServe's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _ports(self) -> TorchServePorts:
        if self.ports is None:
            raise BackendUnavailable("the managed TorchServe has not been started")
        return self.ports

    def _read_java_pid(self, deadline: float) -> int:
        """The keeper's first stdout line: the PID of the Java frontend it started."""
        assert self._keeper is not None and self._keeper.stdout is not None
        stdout: IO[bytes] = self._keeper.stdout
        ready, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.stop()
            raise BackendUnavailable(f"TorchServe's keeper did not start Java:\n{self.log_tail()}")
        return int(line)

    def _wait_ping(self, deadline: float) -> None:
        url = f"{self.inference_url}/ping"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    self.stop()
                    raise BackendUnavailable(f"TorchServe exited during start-up:\n{self.log_tail()}")
                if self.key_file.exists():
                    with contextlib.suppress(httpx.HTTPError, ConfigError, BackendUnavailable, OSError):
                        assert self.keys is not None
                        headers = {"Authorization": self.keys.inference_header()}
                        status = client.get(url, headers=headers).status_code
                        if status == 200:
                            return
                        if status == 400 and self.keys.stale():  # expired during a slow start
                            self.keys.renew()
                time.sleep(0.1)  # polling interval, bounded by the deadline above
        self.stop()
        raise BackendUnavailable(
            f"TorchServe did not answer /ping within {self.options.start_timeout:g} s:\n{self.log_tail()}"
        )

    def _write_config(self) -> Path:
        p = self._ports()
        run = self.options.run_dir
        store = run / "model_store"
        models = ",".join(f"{name}={mar}" for name, mar in self.options.models.items())
        allowed = f"file://\\Q{store}\\E/[^/]+\\.mar"  # a java.util.regex: this model store only
        lines = [
            f"inference_address=http://127.0.0.1:{p.inference}",
            f"management_address=http://127.0.0.1:{p.management}",
            f"metrics_address=http://127.0.0.1:{p.metrics}",
            "grpc_inference_address=127.0.0.1",
            "grpc_management_address=127.0.0.1",
            f"grpc_inference_port={p.grpc_inference}",
            f"grpc_management_port={p.grpc_management}",
            f"model_store={_escape(str(store))}",
            f"load_models={_escape(models)}",
            f"allowed_urls={_escape(allowed)}",
            "install_py_dep_per_model=false",
            f"default_workers_per_model={self.options.workers_per_model}",
            f"default_response_timeout={self.options.response_timeout}",
            f"max_request_size={MAX_MESSAGE_BYTES}",
            f"max_response_size={MAX_MESSAGE_BYTES}",
            "metrics_mode=prometheus",
            "disable_token_authorization=false",
            f"token_expiration_min={self.options.token_expiration_min:g}",
            "enable_model_api=false",
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
            "-ncs",
        ]

    def _env(self) -> dict[str, str]:
        tmp = str(self.options.run_dir / "tmp")
        return child_env(
            {
                "TMPDIR": tmp,
                "TEMP": tmp,
                "TORCHINDUCTOR_CACHE_DIR": str(self.options.run_dir / "inductor"),
                "LOG_LOCATION": str(self.options.run_dir / "logs"),
                "METRICS_LOCATION": str(self.options.run_dir / "logs"),
            }
        )


#: TorchServe's Python workers listen on ``<java.io.tmpdir>/.ts.sock.<9000+n>``; AF_UNIX paths hold 107 bytes.
_SOCKET_NAME = ".ts.sock.65535"
_MAX_SOCKET_PATH = 107


def _check_socket_path(tmp: Path) -> None:
    """Fail at once, with the reason, when the workers' socket path would be too long (they cannot start)."""
    if len(os.fsencode(tmp / _SOCKET_NAME)) > _MAX_SOCKET_PATH:
        raise BackendUnavailable(
            f"the TorchServe run directory {tmp.parent} is too deep for its workers' Unix sockets "
            f"(at most {_MAX_SOCKET_PATH} bytes); point TMPDIR at a shorter directory"
        )


def _escape(value: str) -> str:
    """A java.util.Properties value: backslashes doubled."""
    return value.replace("\\", "\\\\")


def _running(pid: int | None) -> bool:
    """Whether ``pid`` is a live process (not a zombie waiting for its parent)."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _ts_home() -> Path:
    """Where the ``ts`` package is installed, found without importing it (its import leaks a file handle)."""
    spec = importlib.util.find_spec("ts")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("TorchServe is not installed (pip install torchserve==0.12.0 pyyaml)")
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent
