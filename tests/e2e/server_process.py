"""Run ``modelgate serve`` as a real process on free ports (port 0) for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

_LISTENING = re.compile(r"modelgate listening: http=[^:]+:(\d+) grpc=[^:]+:(\d+) metrics=[^:]+:(\d+)")
_MANAGEMENT = re.compile(r"modelgate listening: .* management=[^ ]+:(\d+) ")


class ServerProcess:
    """A ``modelgate serve`` child; ``start()`` returns once the gateway reports ready."""

    def __init__(
        self, repo: Path, *extra: str, env: dict[str, str] | None = None, ready_url_scheme: str = "http",
        ready_context: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self.args = [sys.executable, "-m", "gateway.cli", "serve", "--model-repository", str(repo),
                     "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", *extra]  # fmt: skip
        self.env = {"MODELGATE_MANAGEMENT_PORT": "0", **os.environ, **(env or {})}
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.http = self.grpc = self.metrics = self.management = 0
        self.scheme = ready_url_scheme
        self.ready_context = ready_context

    def start(self, timeout: float = 300) -> ServerProcess:
        """``timeout`` is a hang guard, not a speed check: a framework-heavy repository (TensorFlow workers,
        TorchServe's JVM) can take minutes to load on a busy 2-core machine."""
        self.proc = subprocess.Popen(self.args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=self.env)  # fmt: skip
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        deadline = time.monotonic() + timeout
        while not self.http:
            self._check_alive(deadline)
            for line in list(self.lines):
                if m := _LISTENING.search(line):
                    self.http, self.grpc, self.metrics = (int(g) for g in m.groups())
                if m := _MANAGEMENT.search(line):
                    self.management = int(m.group(1))
            time.sleep(0.05)
        while not self._ready():
            self._check_alive(deadline)
            time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management}"

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> int:
        """SIGKILL (a crash: no drain, no clean-up) and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.kill()
        code = self.proc.wait(60)
        self._drainer.join(10)
        return code

    def run_to_exit(self, timeout: float = 120) -> tuple[int, str]:
        """Run a command that is expected to exit by itself (e.g. refused settings): exit code and stderr."""
        done = subprocess.run(self.args, capture_output=True, text=True, env=self.env, timeout=timeout)
        return done.returncode, done.stderr

    def wait_for_log(self, needle: str, timeout: float = 60) -> str:
        """The first log line containing ``needle``, polling until it appears (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                if needle in line:
                    return line
            if time.monotonic() > deadline:
                raise TimeoutError(f"no log line with {needle!r}:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return "".join(self.lines)

    def _ready(self) -> bool:
        try:
            verify: ssl.SSLContext | bool = self.ready_context or True
            return httpx.get(f"{self.url}/v2/health/ready", timeout=2, verify=verify).status_code == 200
        except httpx.TransportError:
            return False

    def _check_alive(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"modelgate exited with {self.proc.returncode}:\n{self.log()}")
        if time.monotonic() > deadline:
            self.close()
            raise TimeoutError(f"modelgate did not become ready:\n{self.log()}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def close(self) -> None:
        """Stop the process (SIGTERM, so it stops its TorchServe and workers; SIGKILL if stuck)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(10)
        self._drainer.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
