"""A real Prometheus (Debian's package) on 127.0.0.1, started by hand and stopped by PID."""

from __future__ import annotations

import math
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    """Scrapes ``targets`` every second and evaluates ``rule_files``; ``query`` runs instant queries."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path]) -> None:
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "modelgate", "static_configs": [{"targets": targets}]}],
        }))  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60, attempts: int = 3) -> PrometheusServer:
        """Start on a free port; another process may take the port first, so try a few."""
        for attempt in range(attempts):
            try:
                return self._start(_free_port(), timeout)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start(self, port: int, timeout: float) -> PrometheusServer:
        self.url = f"http://127.0.0.1:{port}"
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}",],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"prometheus did not start:\n{(self.workdir / 'prometheus.log').read_text()}")
            time.sleep(0.1)  # polling interval, bounded by the deadline above
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; raises with Prometheus's error if the expression is invalid."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"{expr}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def has_data(self, expr: str) -> bool:
        """At least one series with a number (not NaN) now."""
        return any(not math.isnan(float(series["value"][1])) for series in self.query(expr))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query_range",
                             params={"query": expr, "start": start, "end": end, "step": step}, timeout=30)  # fmt: skip
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(10)
